#!lua
-- The drain's read of a batch of orders' live records, in one call: a pipeline of
-- HGETALLs cost the worker more Python per order (a command packed and a reply parsed
-- each) than the insert it feeds.
-- KEYS: order hashes; ARGV: the fields wanted.
-- Returns, for each key, its values of those fields in order (nil where one is missing).
local found = {}
for i, key in ipairs(KEYS) do
  found[i] = redis.call('HMGET', key, unpack(ARGV))
end
return found

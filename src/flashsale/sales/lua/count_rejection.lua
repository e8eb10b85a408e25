-- Count a refusal decided outside reserve.lua (Flask-Limiter's per-address limit on the
-- purchase view) in the sale's stats, without creating the hash of a sale redis does not know.
-- KEYS: sale hash; ARGV: the counter's field (rejected_<reason>)
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
end
return 0

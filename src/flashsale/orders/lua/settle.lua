#!lua
-- Move an order to a new status, atomically with its stock: the only code that gives
-- stock back. A cancel returns the units exactly once, because it happens only on the
-- transition into 'cancelled', and only from a status that allows it.
-- KEYS: for each order moved, its order hash, sale hash, units-per-buyer hash and the
--       payment deadlines zset (four keys an order: the drain confirms a batch in one call)
-- ARGV: target status, now (ms), allowed current statuses (comma separated),
--       'deadline' to require the deadline to have passed, 'before' to require it not to,
--       seconds a final (paid or cancelled) order's record stays in redis (the ledger
--       answers for it afterwards); the same for every order of the call
-- Returns one reply per order: {outcome, status before}.
local target, now, allowed, when = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local retention = tonumber(ARGV[5] or '0')

local function settle(order, sale, units, deadlines)
  local o = redis.call('HMGET', order, 'status', 'quantity', 'user_id', 'deadline_ms')
  local status = o[1]
  if not status then
    return {'not_found'}
  end
  if status == target then
    return {'unchanged', status}
  end
  if not string.find(',' .. allowed .. ',', ',' .. status .. ',', 1, true) then
    return {'refused', status}
  end
  local deadline = tonumber(o[4])
  if when == 'deadline' and now < deadline then
    return {'refused', status}
  end
  if when == 'before' and now >= deadline then
    return {'refused', status}
  end

  redis.call('HSET', order, 'status', target)
  if target == 'cancelled' then
    local qty = tonumber(o[2])
    redis.call('HINCRBY', sale, 'remaining', qty)
    -- An archived sale's holdings are gone (sales/archive.py): nothing to give back there.
    if redis.call('EXISTS', units) == 1 then
      redis.call('HINCRBY', units, o[3], -qty)
    end
    redis.call('HINCRBY', sale, 'orders_cancelled', 1)
    redis.call('ZREM', deadlines, string.match(order, '[^:]+$'))
  elseif target == 'paid' then
    redis.call('HINCRBY', sale, 'orders_paid', 1)
    redis.call('ZREM', deadlines, string.match(order, '[^:]+$'))
  end
  if retention > 0 and (target == 'cancelled' or target == 'paid') then
    redis.call('EXPIRE', order, retention)
  end
  return {'changed', status}
end

local replies = {}
for i = 1, #KEYS, 4 do
  replies[#replies + 1] = settle(KEYS[i], KEYS[i + 1], KEYS[i + 2], KEYS[i + 3])
end
return replies

"""Ids that no other ledger has used: random, not counted.

A database counts its ids from 1, so a new database — or one restored from an older
backup — hands out ids that another ledger's redis state already holds (sale 1's stock,
buyer 5's orders), and the new sale or buyer inherits them. A random id in 2^53 does not
collide in practice: ten million ids have a chance of about one in 10^4 of one collision
in total, and the insert refuses it (a primary key) rather than merging. 2^53 keeps an id
exact in JavaScript's numbers too, and 16 decimal digits long.
"""

import secrets

LOWEST = 10**15  # always 16 digits: told apart at a glance from the old counted ids
HIGHEST = 2**53 - 1


def new_id() -> int:
    return LOWEST + secrets.randbelow(HIGHEST - LOWEST + 1)

"""The contact-pressure basket: policy, the Redis Lua gate and its in-memory twin."""

"""The trace format's step keys and expect values, defined once.

Both :mod:`.trace` (the format, its reader and writer) and :mod:`.wire` (the replay's msgspec
decoders, which :mod:`.trace` imports when a replay reads sessions) need them; here, neither module
imports the other at load time to get them (no import cycle).
"""

EXPECT_VALUES = ("ok", "fail", "any")  # a step's expect; the results file codes them in this order
STEP_KEYS = ("op", "args", "bind", "expect", "think", "scenario")  # every step has each (see trace.Step)

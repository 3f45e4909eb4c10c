"""Every size limit on what ChromoDesk reads, in one place (documented in the README's Inputs).

Each is far above anything real and far below what would stall the app: a crafted or
damaged file is refused early, with the limit in the message, instead of eating memory.
"""

from __future__ import annotations

MB = 1 << 20

#: pixels per image (a metaphase is ~1 MP; 100 MP is a whole slide scan)
MAX_PIXELS = 100_000_000
#: chromosome boxes per cell (VOC objects, session records): a near-tetraploid cell has ~92
MAX_OBJECTS = 400
#: a VOC annotation file (46 objects take ~13 kB)
MAX_ANNOTATION_BYTES = 16 * MB
#: a review session file (~40 kB per cell)
MAX_SESSION_BYTES = 32 * MB
#: a model bundle's JSON metadata (~0.1 MB) and its weights (the largest architecture ~100 MB)
MAX_BUNDLE_JSON_BYTES = 8 * MB
MAX_WEIGHTS_BYTES = 1024 * MB
#: points of one chromosome outline in a session (a simplified contour has ~20-80)
MAX_OUTLINE_POINTS = 4000

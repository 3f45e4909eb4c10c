"""Qt-free, torch-free core: may be imported by anything (enforced by tests/core/test_layering.py)."""

"""Sample metaphases shipped with ChromoDesk (a package only so that wheels carry them; see chromodesk/bundled.py)."""

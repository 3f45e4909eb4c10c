"""ChromoDesk: desktop karyotyping — crop, classify and review every chromosome of a metaphase."""

__version__ = "0.1.0"

"""grouper: CHS-DRG / DIP grouper."""

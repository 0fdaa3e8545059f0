"""Importers: official table sets → scheme packs (a .grp file plus the CSV tables it names)."""

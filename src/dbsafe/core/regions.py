"""The regions a vault or server may name: the cloud service's supported-regions list,
kept as data (name → abbreviation, None where the list gives none)."""

from __future__ import annotations

from dbsafe.core.errors import DbsafeError

REGIONS: dict[str, str | None] = {
    "Australia South East": "ASE", "East Australia": "AE", "Australia Central": "AC",
    "Australia Central 2": "AC", "Brazil South": "BRS", "Canada Central": "CNC",
    "Canada East": "CE", "South East Asia": "SEA", "East Asia": "EA", "East US": "EUS",
    "East US 2": "EUS2", "West Central US": "WCUS", "West US": "WUS", "West US 2": "WUS 2",
    "North Central US": "NCUS", "Central US": "CUS", "South Central US": "SCUS",
    "India Central": "INC", "India South": "INS", "India West": None, "Japan East": "JPE",
    "Japan West": "JPW", "Korea Central": "KRC", "Korea South": "KRS", "North Europe": "NE",
    "West Europe": None, "UK South": "UKS", "UK West": "UKW", "US Gov Arizona": None,
    "US Gov Virginia": None, "US Gov Texas": None, "US DoD Central": None,
    "US DoD East": None, "Germany North": None, "Germany West Central": None,
    "Switzerland North": None, "Switzerland West": None, "France Central": None,
    "China East": None, "China East 2": None, "China North": None, "China North 2": None,
}


def _key(text: str) -> str:
    return "".join(text.lower().split())


_LOOKUP: dict[str, str] = {}
for _name, _abbr in REGIONS.items():
    _LOOKUP.setdefault(_key(_name), _name)
# An abbreviation the list gives to two regions (AC: Australia Central and Central 2)
# names neither: it is refused with both names.
_AMBIGUOUS: dict[str, list[str]] = {}
for _name, _abbr in REGIONS.items():
    if _abbr and _key(_abbr) not in _LOOKUP:
        _AMBIGUOUS.setdefault(_key(_abbr), []).append(_name)
for _abbr_key, _names in list(_AMBIGUOUS.items()):
    if len(_names) == 1:
        _LOOKUP[_abbr_key] = _names[0]
        del _AMBIGUOUS[_abbr_key]


def check_region(text: str) -> str:
    """The canonical region name for a name or abbreviation (any case, any spacing)."""
    key = _key(text)
    if key in _AMBIGUOUS:
        raise DbsafeError("region.ambiguous", region=text,
                          names=" or ".join(repr(n) for n in _AMBIGUOUS[key]))
    name = _LOOKUP.get(key)
    if name is None:
        raise DbsafeError("region.unknown", region=text, valid=", ".join(REGIONS))
    return name

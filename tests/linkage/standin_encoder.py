"""A small stand-in for `connectors.pseudonymise.IdentityEncoder`, following the extract
contract (docs/CONTRACTS.md "The split extract"), for linkage tests only.

It is used only when the real encoder is not importable, so the linkage tests can run
against contract-shaped linkage rows before (or without) the connectors package.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import jellyfish

NICKNAMES = {"bill": "william", "will": "william", "bob": "robert", "rob": "robert",
             "liz": "elizabeth", "beth": "elizabeth", "jim": "james", "kate": "katherine"}
CLK_BITS = 1024
CLK_K = 20


def _std(value: str | None) -> str | None:
    if value is None:
        return None
    v = " ".join(value.lower().replace("-", " ").split())
    return v or None


def _token(key: bytes, value: str | None) -> int | None:
    if value is None:
        return None
    return struct.unpack(">q", hmac.new(key, value.encode(), hashlib.sha256).digest()[:8])[0]


def _clk(key: bytes, value: str | None) -> bytes | None:
    if value is None:
        return None
    padded = f"_{value}_"
    bits = bytearray(CLK_BITS // 8)
    for i in range(len(padded) - 1):
        digest = hmac.new(key, padded[i : i + 2].encode(), hashlib.sha256).digest()
        for j in range(CLK_K):
            pos = int.from_bytes(digest[j : j + 2], "big") % CLK_BITS
            bits[pos // 8] |= 1 << (7 - pos % 8)
    return bytes(bits)


class StandInEncoder:
    def __init__(self, secret: bytes = b"k" * 32) -> None:
        self.secret = secret

    def _key(self, purpose: str) -> bytes:
        return hmac.new(self.secret, purpose.encode(), hashlib.sha256).digest()

    def encode_identity(self, raw: dict) -> dict:
        g = _std(raw.get("given_name"))
        g = g.split()[0] if g else None
        f = _std(raw.get("family_name"))
        dob = raw.get("date_of_birth")  # ISO yyyy-mm-dd or None
        pc = _std(raw.get("postcode"))
        pc = pc.replace(" ", "") if pc else None
        t = lambda field, v: _token(self._key("token/" + field), v)  # noqa: E731
        bk = lambda *parts: (  # noqa: E731
            None if any(p is None for p in parts) else _token(self._key("blocking"), "|".join(parts))
        )
        y = m = d = None
        if dob:
            y, m, d = dob.split("-")
        canon = NICKNAMES.get(g, g) if g else None
        gphon = jellyfish.metaphone(g) if g else None
        fphon = jellyfish.metaphone(f) if f else None
        sector = pc[:-2] if pc and len(pc) > 3 else None
        district = pc[:-3] if pc and len(pc) > 4 else None
        return {
            "tk_nhs": t("nhs_number", raw.get("nhs_number")),
            "tk_nino": t("nino", raw.get("nino")),
            "tk_given": t("given", g),
            "tk_given_canon": t("given_canon", canon),
            "tk_given_phon": t("given_phon", gphon),
            "tk_middle": t("middle", _std(raw.get("middle_names"))),
            "tk_family": t("family", f),
            "tk_family_phon": t("family_phon", fphon),
            "tk_dob": t("dob", dob),
            "tk_dob_swap": t("dob", f"{y}-{d}-{m}") if dob else None,
            "tk_dob_year": t("dob_year", y),
            "tk_dob_month": t("dob_month", m),
            "tk_dob_day": t("dob_day", d),
            "tk_sex": t("sex", _std(raw.get("sex"))),
            "tk_postcode": t("postcode", pc),
            "tk_pc_sector": t("pc_sector", sector),
            "tk_pc_district": t("pc_district", district),
            "tk_locality": t("locality", _std(raw.get("locality"))),
            "clk_name": _clk(self._key("clk/name"), " ".join(x for x in (g, f) if x) or None),
            "clk_given": _clk(self._key("clk/given"), g),
            "clk_family": _clk(self._key("clk/family"), f),
            "clk_address": _clk(self._key("clk/address"), _std(raw.get("address"))),
            "bk_fam_yob": bk(fphon, y),
            "bk_given_dob": bk(canon, dob),
            "bk_pc_given": bk(pc, gphon),
            "bk_fam_dob_md": bk(fphon, m, d),
        }

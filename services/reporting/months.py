"""Reporting months are calendar months in Asia/Makassar time (WITA, UTC+8): a complaint filed
at 23:30 WITA on the last day of a month counts in that month."""
from datetime import datetime
from zoneinfo import ZoneInfo

from shared.events import parse_iso

WITA = ZoneInfo("Asia/Makassar")


def month_key(filed_at_iso: str) -> str:
    return parse_iso(filed_at_iso).astimezone(WITA).strftime("%Y-%m")


def wita(moment: datetime) -> datetime:
    return moment.astimezone(WITA)

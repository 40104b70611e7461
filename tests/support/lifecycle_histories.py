"""The lifecycle's scripted histories as commands to routing's ``Workflow``, in a form both the
v1-era code (``scripts/record_v1_routing_log.py``, run on the tree before routing's events
carried the lifecycle) and today's code can play: single agency, two leads, a hand-back the desk
re-routes, an escalation after a breach, a dismissal as a duplicate. Imports nothing from the
project, so the v1 tree can load it by path. Texts are made up; no personal data."""
from __future__ import annotations

from datetime import timedelta

#: A rule naming two lead agencies (one YAML edit away in production), put before the shipped rules.
TWO_LEADS_RULE = {
    "id": "jembatan-dan-pungutan", "when": {"keywords_any": ["jembatan gantung"]},
    "lead": ["dpupr", "polda-ntb"], "coordinating": ["kejati-ntb"],
    "reason": "Jembatan gantung dan pungutan penyeberangan: Dinas PUPR dan Polda NTB bersama.",
}

#: (history, the complaint's text), filed in this order.
FILINGS = (
    ("single_agency", "Jalan kabupaten di Praya Lombok Tengah rusak parah, banyak lubang"),
    ("two_leads", "Jembatan gantung di desa kami putus, dan petugas minta uang untuk menyeberang"),
    ("hand_back", "Jalan kabupaten di Praya Lombok Tengah ambles dekat pasar"),
    ("dismissal_original", "Sampah menumpuk di pasar Cakranegara Mataram tidak diangkut"),
    ("dismissal", "Sampah di pasar Cakranegara Mataram belum diangkut juga"),
    ("escalation", "Lampu penerangan jalan di Selong Lombok Timur mati sebulan"),
)


def play(workflow, ids: dict[str, str], tracking_codes: dict[str, str], now) -> None:
    """Every step after filing (``ids``/``tracking_codes`` per history; ``now()`` the clock).
    Only the escalation history is still open when breaches are checked, far in the future."""
    lead = workflow.get_complaint(ids["single_agency"])["lead_agencies"][0]
    workflow.acknowledge(ids["single_agency"], lead, "eka")
    workflow.respond(ids["single_agency"], lead, "Jalan sudah ditambal kemarin.", True, "eka")

    workflow.respond(ids["two_leads"], "dpupr", "Jembatan sedang kami perbaiki, selesai bagian kami.", True, "budi")
    workflow.respond(ids["two_leads"], "polda-ntb", "Petugas yang meminta uang sudah ditindak.", True, "agus")

    lead = workflow.get_complaint(ids["hand_back"])["lead_agencies"][0]
    workflow.reject(ids["hand_back"], lead, "Ruas ini jalan provinsi, bukan wewenang kami.", "eka")
    workflow.assign(ids["hand_back"], ["dpupr"], "Jalan provinsi", "sari")
    workflow.acknowledge(ids["hand_back"], "dpupr", "budi")
    workflow.respond(ids["hand_back"], "dpupr", "Sudah kami urug.", True, "budi")

    workflow.dismiss(ids["dismissal"], "Sama dengan aduan sebelumnya", "sari", tracking_codes["dismissal_original"])
    workflow.dismiss(ids["dismissal_original"], "Sudah ditangani dinas lewat laporan lain", "sari")

    workflow.assign(ids["escalation"], ["dpupr"], "Penerangan jalan provinsi", "sari")
    workflow.escalate_breaches(now() + timedelta(days=90))

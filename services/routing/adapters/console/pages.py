"""The console's request handling: sessions, CSRF, who may see which page, and the pages
themselves. Every action calls the ``Workflow`` method that RPC and the HTTP API call, with
``caller`` = the signed-in agency (so an agency sees and acts only on its complaints, exactly as
with its bearer token) and ``actor`` = ``<agency code>:<officer name>``.

The reporter's contact is asked from intake (``reporter_contact``, audited there) only for the
desk, with a reason, and only after every read of routing's database has closed; it is shown
once on the page it was asked from and kept nowhere else.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from werkzeug.utils import redirect
from werkzeug.wrappers import Response

from shared.core.errors import EXPECTED, Forbidden, NotFound, NotVisible
from shared.core.events import utc_now
from services.routing.adapters import evidence as evidence_records
from services.routing.adapters import repository, web
from services.routing.adapters.console import details, present, sessions
from services.routing.adapters.console.session import (COOKIE_NAME, COOKIE_PATH, Session, SessionCodec,
                                              anonymous, csrf_matches)

log = logging.getLogger("routing")

HERE = Path(__file__).resolve().parents[2]  # the service folder: templates/, static/
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static" / "console"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
MAX_FORM_BYTES = 64 * 1024
OFFICER_NAME = re.compile(r"^[^\x00-\x1f:]{1,100}$")  # as the HTTP API's X-Actor
CSRF_REFUSAL = ("Permintaan ditolak: formulir ini tidak membawa token keamanan (CSRF) yang sah — "
                "mungkin halaman sudah terlalu lama terbuka, Anda sudah keluar, atau formulir "
                "dikirim dari situs lain. Muat ulang halaman, lalu kirim lagi.")
TOO_MANY_GUESSES = ("Terlalu banyak token yang salah dari alamat ini. Tunggu {seconds} detik, lalu "
                    "coba lagi.")
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                "script-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                                "base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MESSAGES = {
    "masuk": "Selamat datang. Anda sudah masuk.",
    "teruskan": "Aduan diteruskan ke instansi.",
    "prioritas": "Prioritas aduan diubah.",
    "rahasia": "Kerahasiaan aduan diubah.",
    "koreksi": "Kategori/wilayah dikoreksi.",
    "tutup": "Aduan ditutup (ditolak).",
    "terima": "Aduan diterima untuk ditindaklanjuti.",
    "bukan-wewenang": "Aduan dikembalikan ke meja layanan (bukan wewenang).",
    "jawab": "Jawaban dicatat dan dikirim kepada warga melalui Facebook.",
    "selesai": "Jawaban dicatat dan bagian instansi Anda dinyatakan selesai.",
    "tidak-ditemukan": "Aduan dengan kode itu tidak ditemukan.",
    "gabung": "Aduan digabung: jawaban instansi atas aduan utama juga dikirim kepada warganya.",
    "gabung-ke": "Aduan digabung: jawaban instansi atas aduan utama juga dikirim kepada warganya.",
    "bukan-ganda": "Saran gabungan ditolak; pasangan ini tidak akan disarankan lagi.",
}
DESK_ACTIONS = ("teruskan", "prioritas", "tutup", "kontak", "rahasia", "koreksi")
# Duplicates and clusters: on the primary ("gabung": the checked suggested complaints join it;
# "bukan-ganda": one suggestion refused) or on a member ("gabung-ke": join the primary named by code).
CLUSTER_ACTIONS = ("gabung", "bukan-ganda", "gabung-ke")
AGENCY_ACTIONS = ("terima", "bukan-wewenang", "jawab")


def hidden_as_unknown(error: Exception, complaint_id: str) -> Exception:
    """A complaint the officer's agency may not see is shown exactly as one that does not exist
    (as the API answers), so the console tells no agency which codes exist."""
    if isinstance(error, NotVisible):
        return NotFound(web.unknown_complaint(complaint_id)["error"])
    return error


@dataclass
class Visit:
    request: object
    session: Session
    new_cookie: bool

    @property
    def signed_in(self) -> bool:
        return self.session.signed_in


@dataclass
class ComplaintForm:
    """What the complaint page shows besides the complaint: the outcome of a form just posted."""
    status: int = 200
    problem: Optional[present.Problem] = None
    values: dict = field(default_factory=dict)
    contact: Optional[dict] = None
    preview: Optional[str] = None
    message: Optional[str] = None


class Console:
    def __init__(self, workflow, codec: SessionCodec, secure_mode: str = "auto",
                 clock: Callable[[], float] = time.time, evidence=None,
                 token_guesses: web.TokenGuesses = web.NO_GUESSES):
        self.workflow = workflow
        # Wrong tokens per client address, shared with the API (``web.TokenGuesses``).
        self.token_guesses = token_guesses
        # ``services.routing.application.evidence.EvidenceAccess``: who may open which evidence
        # (the same rule as the API's), and the bytes from intake.
        self.evidence_access = evidence
        self.codec = codec
        self.secure_mode = secure_mode
        self.clock = clock
        self.templates = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)),
                                     autoescape=select_autoescape(["html"]), trim_blocks=True,
                                     lstrip_blocks=True)
        self.templates.globals.update(labels=present, wita=present.wita)

    # --- sessions --------------------------------------------------------------------------

    def visit(self, request) -> Visit:
        now = int(self.clock())
        session = self.codec.loads(request.cookies.get(COOKIE_NAME), now)
        if session is not None and session.agency_code is not None:
            if not (session.signed_in and session.agency_code in self.workflow.directory
                    and self._token_still_valid(session)):
                session = None
        if session is None:
            return Visit(request, anonymous(now), True)
        return Visit(request, session, False)

    def _token_still_valid(self, session: Session) -> bool:
        """The session is still open (not signed out, not expired) and its token not revoked."""
        with self.workflow.database.read() as connection:
            if not sessions.is_open(connection, session, int(self.clock())):
                return False
            hashes = details.token_hashes(connection, session.agency_code)
        return self.codec.mark_is_current(session.token_mark, hashes)

    def is_desk(self, session: Session) -> bool:
        return session.agency_code == self.workflow.desk

    def _secure(self, request) -> bool:
        if self.secure_mode in ("true", "false"):
            return self.secure_mode == "true"
        forwarded = (request.headers.get("X-Forwarded-Proto") or "").split(",")[0].strip().lower()
        return request.scheme == "https" or forwarded == "https"

    def finish(self, visit: Visit, response: Response) -> Response:
        if visit.new_cookie:
            response.set_cookie(COOKIE_NAME, self.codec.dumps(visit.session),
                                max_age=self.codec.max_age_seconds, path=COOKIE_PATH,
                                httponly=True, samesite="Lax", secure=self._secure(visit.request))
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def render(self, visit: Visit, template: str, status: int = 200, **context) -> Response:
        session = visit.session
        agency = (self.workflow.directory.get(session.agency_code)
                  if session.signed_in else None)
        page = self.templates.get_template(f"console/{template}").render(
            session=session, csrf_token=session.csrf, signed_in=session.signed_in,
            is_desk=self.is_desk(session), agency=agency, **context)
        return self.finish(visit, Response(page, status=status, content_type="text/html; charset=utf-8"))

    def go(self, visit: Visit, location: str) -> Response:
        return self.finish(visit, redirect(location, code=303))

    def problem_page(self, visit: Visit, problem: present.Problem) -> Response:
        return self.render(visit, "problem.html", problem.status, problem=problem)

    def _csrf_refused(self, visit: Visit) -> Response:
        return self.problem_page(visit, present.Problem(403, CSRF_REFUSAL, []))

    def _checked_post(self, request) -> tuple[Visit, Optional[Response]]:
        """The visit of a POST, or the response refusing it (too large, no valid CSRF token)."""
        visit = self.visit(request)
        if (request.content_length or 0) > MAX_FORM_BYTES:
            return visit, self.problem_page(visit, present.Problem(413, "Isian terlalu panjang.", []))
        if visit.new_cookie or not csrf_matches(visit.session, request.form.get("csrf_token")):
            return visit, self._csrf_refused(visit)
        return visit, None

    # --- sign-in -----------------------------------------------------------------------------

    def home(self, request) -> Response:
        visit = self.visit(request)
        if not visit.signed_in:
            return self.go(visit, "/console/login")
        return self.go(visit, "/console/antrian" if self.is_desk(visit.session) else "/console/kotak-masuk")

    def login_form(self, request) -> Response:
        visit = self.visit(request)
        if visit.signed_in:
            return self.home(request)
        return self.render(visit, "login.html")

    def login(self, request) -> Response:
        visit, refused = self._checked_post(request)
        if refused is not None:
            return refused
        guessing = self.token_guesses.refusal(request)
        if guessing is not None:
            page = self.render(visit, "login.html", 429,
                               error=TOO_MANY_GUESSES.format(seconds=guessing.retry_after_seconds))
            page.headers["Retry-After"] = str(guessing.retry_after_seconds)
            return page
        token = (request.form.get("token") or "").strip()
        officer = (request.form.get("nama") or "").strip()
        if not OFFICER_NAME.match(officer):
            return self.render(visit, "login.html", 400, officer=officer,
                               error="Tulis nama Anda (paling banyak 100 karakter, tanpa titik dua); "
                                     "nama dicatat pada setiap tindakan.")
        agency_code = self.workflow.authenticate(token)
        if agency_code is None or agency_code not in self.workflow.directory:
            if token:
                self.token_guesses.failed(request)
            return self.render(visit, "login.html", 401, officer=officer,
                               error="Token tidak dikenal. Periksa token instansi Anda atau minta "
                                     "token baru kepada meja layanan.")
        visit.session = self.codec.signed_in(agency_code, officer, repository.hash_token(token),
                                             int(self.clock()))
        with self.workflow.database.transaction() as tx:
            sessions.open_session(tx.connection, visit.session, self.codec.max_age_seconds)
        visit.new_cookie = True  # a new session and CSRF token at every sign-in
        log.info("console sign-in by %s", agency_code)
        return self.go(visit, "/console/")

    def logout(self, request) -> Response:
        visit, refused = self._checked_post(request)
        if refused is not None:
            return refused
        if visit.signed_in:   # the server forgets it: a copy of the cookie is signed out too
            with self.workflow.database.transaction() as tx:
                sessions.close_session(tx.connection, visit.session)
        visit.session, visit.new_cookie = anonymous(int(self.clock())), True
        return self.go(visit, "/console/login")

    # --- lists -------------------------------------------------------------------------------

    def queue(self, request) -> Response:
        visit = self.visit(request)
        if not visit.signed_in:
            return self.go(visit, "/console/login")
        if not self.is_desk(visit.session):
            return self.problem_page(visit, present.Problem(
                403, "Antrian triase hanya untuk meja layanan.", []))
        filters = present.Filters.from_args(request.args)
        items = self.workflow.desk_queue(caller=visit.session.agency_code)
        for item in items:
            item["reasons_words"] = [present.desk_reason(why) for why in item["why"]]
            item["deadline"] = (item["due_at"].get("triage") or min(item["due_at"].values(), default=None))
        kept = [item for item in items if filters.keep(item)]
        page = present.paginate(kept, request.args.get("halaman"))
        return self.render(visit, "queue.html", page=page, filters=filters, total=len(items),
                           names=self._names(), message=MESSAGES.get(request.args.get("pesan", "")),
                           page_link=lambda n: "?" + urlencode(filters.query(halaman=n)))

    def inbox(self, request) -> Response:
        visit = self.visit(request)
        if not visit.signed_in:
            return self.go(visit, "/console/login")
        if self.is_desk(visit.session):
            return self.go(visit, "/console/antrian")
        code = visit.session.agency_code
        items = self.workflow.complaints_for(code, None, caller=code)
        with self.workflow.database.read() as connection:
            deadlines = details.next_deadlines(connection, [item["complaint_id"] for item in items])
        now = utc_now()
        for item in items:
            item["next_due_at"] = deadlines.get(item["complaint_id"])
            item["deadline_state"] = present.deadline_state(item["next_due_at"], item, now)
        group = request.args.get("kelompok") or "terbuka"
        group = group if group in present.INBOX_GROUPS else "terbuka"
        counts = {key: sum(present.in_group(item, key) for item in items) for key in present.INBOX_GROUPS}
        filters = present.Filters.from_args(request.args)
        rank = {"terlambat": 0, "mendekati": 1, None: 2}
        kept = sorted((item for item in items if present.in_group(item, group) and filters.keep(item)),
                      key=lambda item: (rank[item["deadline_state"]], item["next_due_at"] or "9999",
                                        item["filed_at"]))
        page = present.paginate(kept, request.args.get("halaman"))
        return self.render(visit, "inbox.html", page=page, filters=filters, group=group, counts=counts,
                           message=MESSAGES.get(request.args.get("pesan", "")),
                           group_link=lambda key: "?" + urlencode(filters.query(kelompok=key)),
                           page_link=lambda n: "?" + urlencode(filters.query(kelompok=group, halaman=n)))

    def clusters(self, request) -> Response:
        """The desk's suggested clusters: each primary with the complaints that probably repeat
        it and why; the desk joins them (all checked ones at once) or refuses one."""
        visit = self.visit(request)
        if not visit.signed_in:
            return self.go(visit, "/console/login")
        if not self.is_desk(visit.session):
            return self.problem_page(visit, present.Problem(
                403, "Saran gabungan aduan hanya untuk meja layanan.", []))
        suggested = self.workflow.suggested_links(caller=visit.session.agency_code)
        return self.render(visit, "clusters.html", clusters=suggested,
                           message=MESSAGES.get(request.args.get("pesan", "")))

    def search(self, request) -> Response:
        """A tracking code typed in the search box: straight to the complaint when the officer
        may see it, otherwise the list filtered by it (an agency is never told whether a code it
        may not see exists)."""
        visit = self.visit(request)
        if not visit.signed_in:
            return self.go(visit, "/console/login")
        code = (request.args.get("kode") or "").strip().upper()[:32]
        home = "/console/antrian" if self.is_desk(visit.session) else "/console/kotak-masuk"
        if not code:
            return self.go(visit, home)
        try:
            complaint = self.workflow.get_complaint(code, caller=visit.session.agency_code)
        except (NotFound, Forbidden):
            extra = {} if self.is_desk(visit.session) else {"kelompok": "semua"}
            return self.go(visit, f"{home}?{urlencode({'kode': code, **extra})}")
        return self.go(visit, f"/console/aduan/{complaint['complaint_id']}")

    # --- one complaint -------------------------------------------------------------------------

    def complaint(self, request, complaint_id: str) -> Response:
        visit = self.visit(request)
        if not visit.signed_in:
            return self.go(visit, "/console/login")
        return self._complaint_page(visit, complaint_id,
                                    ComplaintForm(message=MESSAGES.get(request.args.get("pesan", ""))))

    def act(self, request, complaint_id: str, action: str,
            reporter_contact: Callable[[str, str, str], dict]) -> Response:
        visit, refused = self._checked_post(request)
        if refused is not None:
            return refused
        if not visit.signed_in:
            return self.go(visit, "/console/login")
        session, form = visit.session, request.form
        desk_action = action in DESK_ACTIONS + CLUSTER_ACTIONS
        if action not in DESK_ACTIONS + CLUSTER_ACTIONS + AGENCY_ACTIONS:
            return self.problem_page(visit, present.Problem(404, "Tindakan tidak dikenal.", []))
        if desk_action != self.is_desk(session):
            return self.problem_page(visit, present.Problem(
                403, "Tindakan ini " + ("khusus meja layanan." if desk_action else "khusus instansi."), []))
        values = {key: form.get(key, "") for key in form if key != "csrf_token"}
        caller, actor = session.agency_code, session.actor
        try:
            if action == "kontak":
                return self._reporter_contact(visit, complaint_id, form.get("alasan", ""), reporter_contact)
            if action == "jawab" and form.get("aksi") == "pratinjau":
                return self._preview(visit, complaint_id, values)
            if action == "teruskan":
                lead = form.get("utama", "")
                codes = [lead] + [c for c in form.getlist("koordinasi") if c and c != lead] if lead else []
                self.workflow.assign(complaint_id, codes, form.get("catatan", ""), actor, caller=caller)
            elif action == "prioritas":
                self.workflow.set_priority(complaint_id, form.get("prioritas", ""), form.get("alasan", ""),
                                           actor, caller=caller)
            elif action == "rahasia":
                self.workflow.set_confidential(complaint_id, form.get("rahasia") == "ya",
                                               form.get("alasan", ""), actor, caller=caller)
            elif action == "koreksi":
                # Only what the desk changed is a correction; an unchanged select means "as it is".
                current = self.workflow.get_complaint(complaint_id, caller=caller)
                category = form.get("kategori") or None
                region = form.get("wilayah") or None
                self.workflow.reclassify(
                    complaint_id, None if category == current["category"] else category,
                    None if region == current["region_code"] else region,
                    form.get("alasan", ""), actor, caller=caller)
            elif action == "tutup":
                duplicate = (form.get("ganda") or "").strip().upper() or None
                self.workflow.dismiss(complaint_id, form.get("alasan", ""), actor, duplicate, caller=caller)
            elif action == "gabung":
                for member in [m for m in form.getlist("ganda") if m.strip()] or [""]:
                    self.workflow.link_complaint(member, complaint_id, form.get("alasan", ""), actor,
                                                 caller=caller)
            elif action == "bukan-ganda":
                self.workflow.refuse_link(form.get("ganda", ""), complaint_id, actor, caller=caller)
            elif action == "gabung-ke":
                primary = (form.get("utama") or "").strip().upper()
                self.workflow.link_complaint(complaint_id, primary, form.get("alasan", ""), actor,
                                             caller=caller)
            elif action == "terima":
                self.workflow.acknowledge(complaint_id, caller, actor, caller=caller)
            elif action == "bukan-wewenang":
                self.workflow.reject(complaint_id, caller, form.get("alasan", ""), actor, caller=caller)
                # Handed back: the agency no longer sees it.
                return self.go(visit, "/console/kotak-masuk?pesan=bukan-wewenang")
            elif action == "jawab":
                resolved = form.get("aksi") == "selesai"
                self.workflow.respond(complaint_id, caller, form.get("jawaban", ""), resolved, actor,
                                      caller=caller)
                action = "selesai" if resolved else "jawab"
        except EXPECTED as error:
            problem = present.plain_problem(error)
            return self._complaint_page(visit, complaint_id, ComplaintForm(problem.status, problem, values))
        if action in CLUSTER_ACTIONS and form.get("kembali") == "gabungan":
            return self.go(visit, f"/console/gabungan?pesan={action}")
        return self.go(visit, f"/console/aduan/{complaint_id}?pesan={action}")

    def _preview(self, visit: Visit, complaint_id: str, values: dict) -> Response:
        complaint = self.workflow.get_complaint(complaint_id, caller=visit.session.agency_code)
        answer = values.get("jawaban", "")
        if not answer.strip():
            return self._complaint_page(visit, complaint_id, ComplaintForm(
                400, present.Problem(400, "Tulis jawabannya dulu, lalu tekan Pratinjau.", []), values))
        text = present.answer_preview(self._agency_name(visit.session.agency_code),
                                      complaint["tracking_code"], answer)
        return self._complaint_page(visit, complaint_id, ComplaintForm(values=values, preview=text))

    def _reporter_contact(self, visit: Visit, complaint_id: str, reason: str,
                          reporter_contact: Callable[[str, str, str], dict]) -> Response:
        # Read routing's view first (its read transaction closes), then call intake.
        complaint = self.workflow.get_complaint(complaint_id, caller=visit.session.agency_code)
        values = {"alasan": reason}
        try:
            contact = reporter_contact(complaint["complaint_id"], visit.session.actor, reason.strip())
        except EXPECTED as error:
            problem = present.plain_problem(error)
            return self._complaint_page(visit, complaint_id, ComplaintForm(problem.status, problem, values))
        except Exception:
            log.exception("intake.reporter_contact failed", extra={"complaint_id": complaint["complaint_id"]})
            problem = present.Problem(503, "Layanan intake tidak menjawab; kontak pelapor belum dapat "
                                           "ditampilkan. Coba lagi sebentar lagi.", [])
            return self._complaint_page(visit, complaint_id, ComplaintForm(503, problem, values))
        return self._complaint_page(visit, complaint_id, ComplaintForm(values=values, contact=contact))

    def _complaint_page(self, visit: Visit, complaint_id: str, outcome: ComplaintForm) -> Response:
        session = visit.session
        caller = session.agency_code
        try:
            complaint = self.workflow.get_complaint(complaint_id, caller=caller)
            timeline = self.workflow.timeline(complaint_id, caller=caller)
        except EXPECTED as error:
            return self.problem_page(visit, present.plain_problem(hidden_as_unknown(error, complaint_id)))
        with self.workflow.database.read() as connection:
            filing = details.filing_details(connection, complaint["complaint_id"])
            kept = evidence_records.of_complaint(connection, complaint["complaint_id"])
        desk = self.is_desk(session)
        names = self._names()
        is_open = complaint["status"] in present.OPEN_STATUSES
        mine = caller in complaint["lead_agencies"] + complaint["coordinating_agencies"]
        role = ("lead" if caller in complaint["lead_agencies"] else "coordinating") if mine else None
        show_attachments = desk or not complaint["confidential"]
        cluster = self.workflow.cluster_of(complaint["complaint_id"], caller=caller) if desk else None
        return self.render(
            visit, "complaint.html", outcome.status, complaint=complaint, outcome=outcome,
            form=outcome.values, names=names, role=role,
            progress=complaint["progress"].get(caller, {}) if mine else {},
            agency_can_act=(not desk) and mine and is_open and not complaint["at_desk"],
            desk_can_act=desk and is_open,
            timeline=[present.timeline_entry(entry, names) for entry in timeline],
            reasons=(filing or {}).get("reasons"),
            # Attachments intake keeps (a media_id) are shown as evidence, opened through routing;
            # Meta's expiring links are never shown.
            attachments=([a for a in (filing or {}).get("attachments", []) if not a.get("media_id")]
                         if show_attachments else None),
            evidence=kept if show_attachments else [],
            agencies=[a for a in self.workflow.agencies() if not a["is_desk"]],
            preview_overhead=len(present.answer_preview(self._agency_name(caller),
                                                        complaint["tracking_code"], "")),
            limit=present.MESSENGER_LIMIT,
            preview_parts=present.messenger_parts(outcome.preview) if outcome.preview else 0,
            cluster=cluster,
        )

    def evidence(self, request, complaint_id: str, digest: str,
                 read_chunk: Callable[[str, str, int], dict]) -> Response:
        """A photo, video, voice note or file of the complaint, for the signed-in desk or an
        assigned agency (not an agency, if the complaint is confidential) — the API's rule."""
        visit = self.visit(request)
        if not visit.signed_in:
            return self.go(visit, "/console/login")
        if self.evidence_access is None:
            return self.problem_page(visit, present.Problem(404, "Bukti tidak tersedia.", []))
        try:
            opened = self.evidence_access.open(complaint_id, digest, visit.session.agency_code, read_chunk)
        except EXPECTED as error:
            return self.problem_page(visit, present.plain_problem(hidden_as_unknown(error, complaint_id)))
        except Exception:
            log.exception("evidence could not be read from intake", extra={"complaint_id": complaint_id})
            return self.problem_page(visit, present.Problem(
                503, "Layanan intake tidak menjawab; bukti belum dapat dibuka. Coba lagi sebentar lagi.", []))
        return self.finish(visit, web.evidence_response(opened))

    # --- helpers -------------------------------------------------------------------------------

    def _names(self) -> dict[str, str]:
        return {agency.code: agency.name for agency in self.workflow.directory.all()}

    def _agency_name(self, code: str) -> str:
        return self.workflow.directory.get(code).name if code in self.workflow.directory else code

    def static(self, request, name: str) -> Response:
        path = (STATIC_DIR / name).resolve()
        if path.parent != STATIC_DIR or path.suffix not in STATIC_TYPES or not path.is_file():
            return Response("tidak ditemukan", status=404, content_type="text/plain; charset=utf-8")
        response = Response(path.read_bytes(), status=200, content_type=STATIC_TYPES[path.suffix])
        response.headers["Cache-Control"] = "public, max-age=3600"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

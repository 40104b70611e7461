"""The name of every event type, as a constant: handlers, commands and subscriptions use these,
never string literals. Each type is declared once, with its owner, fields and versions, in
``shared.core.events.catalogue``."""
from __future__ import annotations

# intake
COMPLAINT_FILED = "ComplaintFiled"
COMPLAINT_AMENDED = "ComplaintAmended"
CITIZEN_MESSAGE_RECEIVED = "CitizenMessageReceived"
CITIZEN_COMMENT_REMOVED = "CitizenCommentRemoved"
STATUS_REQUESTED = "StatusRequested"
EVIDENCE_STORED = "EvidenceStored"
CITIZEN_REACTED = "CitizenReacted"
CITIZEN_ANSWERED_FOLLOW_UP = "CitizenAnsweredFollowUp"

# routing
COMPLAINT_ROUTED = "ComplaintRouted"
COMPLAINT_ACKNOWLEDGED = "ComplaintAcknowledged"
COMPLAINT_REJECTED_BY_AGENCY = "ComplaintRejectedByAgency"
COMPLAINT_RESPONDED = "ComplaintResponded"
COMPLAINT_RESOLVED = "ComplaintResolved"
COMPLAINT_ESCALATED = "ComplaintEscalated"
COMPLAINT_DISMISSED = "ComplaintDismissed"
COMPLAINT_CONFIDENTIALITY_CHANGED = "ComplaintConfidentialityChanged"
COMPLAINT_LINKED = "ComplaintLinked"
COMPLAINT_RECLASSIFIED = "ComplaintReclassified"
COMPLAINT_REOPENED = "ComplaintReopened"
COMPLAINT_REOPEN_REFUSED = "ComplaintReopenRefused"
CITIZEN_RATED = "CitizenRated"

# notification
CITIZEN_NOTIFIED = "CitizenNotified"
CITIZEN_NOTIFICATION_FAILED = "CitizenNotificationFailed"

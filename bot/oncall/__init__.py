"""On-call: who is on call (PagerDuty or a static rotation) and paging them with an SLA."""

"""Incidents: declare P0–P3, classify severity, page by policy, run the incident in its channel."""

"""Grafana as code: dashboards and alert rules built with grafana-foundation-sdk.

``grafana.build.build()`` writes the provisioning files Grafana loads at start
(``grafana/provisioning/``); ``grafana.sync.sync()`` pushes the same objects to a running
Grafana through its HTTP API.
"""

"""grafana"""

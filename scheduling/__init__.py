"""Scheduled commands: schedule a command for later, run it through the mediator with retries."""

"""The hand-off: timeline, postmortem draft and eval-set export, built from the incident database."""

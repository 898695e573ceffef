"""The live twin: observers, stream handling, continual adaptation and alarms."""

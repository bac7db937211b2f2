"""Signal receivers: drift checks for newly validated dataset versions."""

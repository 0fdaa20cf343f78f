"""What every app shares: access rules and roles, command-line helpers, import reports, the
data set splits, upload limits and the errors a job raises."""

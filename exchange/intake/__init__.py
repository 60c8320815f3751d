"""Submit-once intake: records deposited by a department into an intake dataset."""

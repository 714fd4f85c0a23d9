"""What runs and how it changes: the plan, each app's generations and reloads, a worker's
slot and its recycles, the retiring of old workers, and the pid file reloads use."""

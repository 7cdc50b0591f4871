"""The experiment graph and its selection rules (UCT, merge, recovery, rollback)."""

//! Control groups: see the cgroup helper issue.

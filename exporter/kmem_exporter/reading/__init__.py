"""Reading kernel files and devices: bounded reads that never block or take the process, and the background
reader of the kernel log device."""

/* disk.h (cli): `cella disk ...`, the image tools, run locally (no cellad). */
#pragma once
/* The library's disk.h too: files in cli/ that include "disk.h" get both. */
#include "disk/disk.h"

/* argv[0] is "disk". Returns the exit status: 0 success, 1 failure,
 * 2 usage error; `check` exits like qemu-img check (0 clean, 2 corruptions,
 * 3 leaks). */
int disk_cli_main(int argc, char **argv);

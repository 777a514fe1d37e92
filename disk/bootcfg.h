/* bootcfg.h: boot loader configurations read from a guest image's /boot
 * (untrusted bytes): GRUB 2's grub.cfg (the default menu entry), Boot
 * Loader Specification entries (/boot/loader/entries/NAME.conf) and GRUB's
 * environment block (grubenv). Pure functions over buffers, fuzzed
 * (tests/fuzz/disk/fuzz_bootcfg.c). See docs/boot.md, "Booting from a disk
 * image". */
#pragma once
#include <stddef.h>

#include "compiler.h"

#define BOOTCFG_MAX_SIZE  (1u << 20) /* a grub.cfg, BLS entry or grubenv read whole */
#define BOOTCFG_INITRD_MAX 8         /* initrd files of one entry (concatenated) */
#define BOOTCFG_PATH_MAX  1024
#define BOOTCFG_CMDLINE_MAX 4096

/* What to boot: paths on the file system that held the configuration,
 * absolute ("/boot/vmlinuz-6.1", or "/vmlinuz-6.1" on a /boot partition),
 * GRUB device prefixes such as "(hd0,gpt2)" stripped. */
struct boot_entry {
	char title[256];
	char kernel[BOOTCFG_PATH_MAX];
	char initrd[BOOTCFG_INITRD_MAX][BOOTCFG_PATH_MAX];
	unsigned nr_initrd;
	char options[BOOTCFG_CMDLINE_MAX]; /* the kernel's command line ("" none) */
};

/* Variables: grubenv's and those a grub.cfg sets as it is read. */
#define BOOTCFG_VARS_MAX 128
struct boot_vars {
	unsigned nr;
	char name[BOOTCFG_VARS_MAX][64];
	char value[BOOTCFG_VARS_MAX][512];
};
void boot_vars_init(struct boot_vars *v);
const char *boot_vars_get(const struct boot_vars *v, const char *name); /* NULL: unset */
/* Set (or replace) name; a name or value too long, or a full table, is
 * ignored (GRUB configurations are read best effort). */
void boot_vars_set(struct boot_vars *v, const char *name, const char *value);

/* GRUB's environment block ("# GRUB Environment Block", name=value lines,
 * '#' padding) into v. 0, or -EINVAL with err when it is not one. */
int grubenv_parse(struct boot_vars *v, const char *buf, size_t len, char *err, size_t errlen)
	__must_check;

/* The entry GRUB boots by default from grub.cfg: `set default=` (an index,
 * "N>M" into submenus, a title or an --id; the last one that expands to a
 * non-empty value; entry 0 when none), the entry's `linux` and `initrd`
 * lines. Conditions are not evaluated: every `set` is taken in order, so
 * Debian's `if [ "${next_entry}" ]; then set default="${next_entry}" else
 * set default="0" fi` yields "0" when grubenv sets no next_entry. Unknown
 * variables expand to nothing. vars holds grubenv's variables (may be
 * empty) and gets those the file sets. 0 with *out filled, or -EINVAL /
 * -ENOENT with err naming what is wrong ("grub.cfg line 12: unterminated
 * quote", "default entry \"9\": no such entry (3 entries)", "entry
 * \"Debian\" has no linux line"). */
int grubcfg_default_entry(const char *buf, size_t len, struct boot_vars *vars,
			  struct boot_entry *out, char *err, size_t errlen) __must_check;

/* One BLS entry file (name: its file name, for messages): title, linux,
 * initrd (repeatable), options (repeatable, joined; $name expanded from
 * vars, as Fedora's `options $kernelopts`). 0, or -EINVAL with err (no
 * linux key, an efi-only entry, a line too long). */
int bls_entry_parse(const char *buf, size_t len, const char *name, const struct boot_vars *vars,
		    struct boot_entry *out, char *err, size_t errlen) __must_check;

/* Which of n BLS entry names ("fedora-6.1.conf") boots by default: the one
 * matching `want` (grubenv's saved_entry, or loader.conf's `default`
 * pattern, the ".conf" suffix optional; glob characters allowed) when
 * given and found, else the newest by version order (strverscmp, the
 * highest first, as systemd-boot sorts). -1 when n is 0. */
int bls_pick_default(const char *const *names, unsigned n, const char *want);

/* loader.conf's `default` value into out ("" none). */
void bls_loader_default(const char *buf, size_t len, char *out, size_t outlen);

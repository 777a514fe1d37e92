/* boot.c: x86_load_kernel: reads the kernel and initrd files, detects the
 * format, places the initrd and command line, and builds the e820 map. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdspec.h"
#include "arch/x86/x86.h"
#include "arch/x86/x86_priv.h"

int x86_load_fail(struct x86_load *ld, int ret, const char *fmt, ...)
{
	va_list ap;

	if (ld->err && ld->errlen) {
		va_start(ap, fmt);
		vsnprintf(ld->err, ld->errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

unsigned x86_e820_build(const struct guest_mem *mem, struct x86_e820_entry *out)
{
	unsigned n = 0;

	out[n++] = (struct x86_e820_entry){0, X86_EBDA_ADDR, E820_RAM};
	out[n++] = (struct x86_e820_entry){X86_EBDA_ADDR, X86_BIOS_AREA_END - X86_EBDA_ADDR,
	                                   E820_RESERVED};
	if (mem->low_size > X86_BIOS_AREA_END)
		out[n++] = (struct x86_e820_entry){X86_BIOS_AREA_END,
		                                   mem->low_size - X86_BIOS_AREA_END, E820_RAM};
	if (mem->high_size)
		out[n++] = (struct x86_e820_entry){MEM_4G, mem->high_size, E820_RAM};
	return n;
}

void x86_zero_page_common(const struct x86_load *ld, uint8_t *zp)
{
	struct x86_e820_entry e820[X86_E820_MAX];
	unsigned n = x86_e820_build(ld->mem, e820);

	zp[BP_TYPE_OF_LOADER] = BP_LOADER_UNDEFINED;
	le32_put(zp + BP_CMD_LINE_PTR, (uint32_t)X86_CMDLINE_ADDR);
	if (ld->initrd_fd >= 0) {
		/* Placed below 3 GiB, so the 32-bit fields suffice. */
		le32_put(zp + BP_RAMDISK_IMAGE, (uint32_t)ld->initrd_addr);
		le32_put(zp + BP_RAMDISK_SIZE, (uint32_t)ld->initrd_size);
	}
	zp[BP_E820_ENTRIES] = (uint8_t)n;
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = zp + BP_E820_TABLE + i * 20;

		le64_put(e, e820[i].addr);
		le64_put(e + 8, e820[i].size);
		le32_put(e + 16, e820[i].type);
	}
}

/* Sizes in messages: MiB when at least one, rounded up, else bytes. */
static void fmt_size(char *buf, size_t len, uint64_t size)
{
	if (size >= MiB(1))
		snprintf(buf, len, "%" PRIu64 " MiB", (size + MiB(1) - 1) >> 20);
	else
		snprintf(buf, len, "%" PRIu64 " bytes", size);
}

int x86_place_initrd(struct x86_load *ld, uint64_t kernel_end, uint64_t limit)
{
	char sz[32];
	uint64_t addr;

	if (ld->initrd_fd < 0)
		return 0;
	limit = MIN(limit, ld->mem->low_size);
	fmt_size(sz, sizeof(sz), ld->initrd_size);
	if (ld->initrd_size > limit)
		return x86_load_fail(ld, -ENOMEM, "initrd %s: %s does not fit below 0x%" PRIx64,
		                     ld->initrd_path, sz, limit - 1);
	addr = ALIGN_DOWN(limit - ld->initrd_size, (uint64_t)4096);
	if (addr < kernel_end)
		return x86_load_fail(ld, -ENOMEM,
		                     "initrd %s: %s does not fit below 0x%" PRIx64
		                     " above the kernel (which ends at 0x%" PRIx64 ")",
		                     ld->initrd_path, sz, limit - 1, kernel_end);
	ld->initrd_addr = addr;
	return 0;
}

int x86_write_initrd_cmdline(struct x86_load *ld)
{
	if (guest_mem_write(ld->mem, X86_CMDLINE_ADDR, ld->cmdline, ld->cmdline_len + 1))
		return x86_load_fail(ld, -EFAULT, "command line: guest RAM too small");
	if (ld->initrd_fd >= 0) {
		uint8_t *dst = guest_mem_ptr(ld->mem, ld->initrd_addr, ld->initrd_size);
		uint64_t done = 0;

		if (!dst)
			return x86_load_fail(ld, -EFAULT, "initrd %s: not inside guest RAM",
			                     ld->initrd_path);
		while (done < ld->initrd_size) {
			size_t chunk = (size_t)MIN(ld->initrd_size - done, (uint64_t)MiB(64));
			ssize_t r = pread(ld->initrd_fd, dst + done, chunk, (off_t)done);

			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return x86_load_fail(ld, -errno, "initrd %s: %s", ld->initrd_path,
				                     strerror(errno));
			if (r == 0)
				return x86_load_fail(ld, -EIO,
				                     "initrd %s: file shrank while reading",
				                     ld->initrd_path);
			done += (uint64_t)r;
		}
	}
	return 0;
}

/* Open a regular file for reading; *size gets its length. */
static int open_input(struct x86_load *ld, const char *what, const char *path, uint64_t *size)
{
	struct stat st;
	char why[256];
	/* "fd:N": the file cellad opened beneath its storage location. */
	int fd = fdspec_open(path, O_RDONLY, 0, FDSPEC_REG, why, sizeof(why));
	int err;

	if (fd < 0)
		return x86_load_fail(ld, fd, "%s%s", what, why);
	if (fstat(fd, &st) < 0) {
		err = -errno;
		close(fd);
		return x86_load_fail(ld, err, "%s%s: %s", what, path, strerror(-err));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return x86_load_fail(ld, -EINVAL, "%s%s: not a regular file", what, path);
	}
	*size = (uint64_t)st.st_size;
	return fd;
}

static int read_kernel(struct x86_load *ld, uint8_t **bufp)
{
	uint64_t size, done = 0;
	uint8_t *buf;
	int fd = open_input(ld, "", ld->kernel_path, &size);

	if (fd < 0)
		return fd;
	if (size == 0) {
		close(fd);
		return x86_load_fail(ld, -EINVAL, "%s: empty file", ld->kernel_path);
	}
	if (size > ld->mem->low_size) {
		close(fd);
		return x86_load_fail(ld, -EFBIG, "%s: larger than guest RAM below 3 GiB",
		                     ld->kernel_path);
	}
	buf = malloc((size_t)size);
	if (!buf) {
		close(fd);
		return x86_load_fail(ld, -ENOMEM, "%s: out of memory", ld->kernel_path);
	}
	while (done < size) {
		ssize_t r = pread(fd, buf + done, (size_t)(size - done), (off_t)done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int err = r < 0 ? -errno : -EIO;

			free(buf);
			close(fd);
			return x86_load_fail(ld, err, "%s: %s", ld->kernel_path,
			                     r < 0 ? strerror(-err) : "file shrank while reading");
		}
		done += (uint64_t)r;
	}
	close(fd);
	*bufp = buf;
	ld->image = buf;
	ld->image_len = (size_t)size;
	return 0;
}

static bool is_bzimage(const uint8_t *buf, size_t len)
{
	return len >= BP_HEADER + 4 && le32_get(buf + BP_HEADER) == BP_HDRS_MAGIC &&
	       le16_get(buf + BP_BOOT_FLAG) == BP_BOOT_FLAG_MAGIC;
}

int x86_load_kernel(struct guest_mem *mem, const char *kernel_path, const char *initrd_path,
                    const char *cmdline, struct x86_boot_info *out, char *err, size_t errlen)
{
	struct x86_load ld = {
		.mem = mem,
		.kernel_path = kernel_path,
		.initrd_path = initrd_path,
		.cmdline = cmdline ? cmdline : "",
		.initrd_fd = -1,
		.err = err,
		.errlen = errlen,
	};
	uint8_t *image = NULL;
	int ret;

	if (err && errlen)
		err[0] = '\0';
	memset(out, 0, sizeof(*out));
	if (!kernel_path)
		return x86_load_fail(&ld, -EINVAL, "no kernel given");
	ld.cmdline_len = strlen(ld.cmdline);
	if (ld.cmdline_len >= X86_CMDLINE_MAX)
		return x86_load_fail(&ld, -E2BIG,
		                     "command line is %zu bytes; at most %llu fit at 0x%llx",
		                     ld.cmdline_len, X86_CMDLINE_MAX - 1, X86_CMDLINE_ADDR);
	if (!guest_mem_ptr(mem, 0, X86_BIOS_AREA_END))
		return x86_load_fail(&ld, -EINVAL, "guest RAM smaller than 1 MiB");
	if (initrd_path) {
		ret = open_input(&ld, "initrd ", initrd_path, &ld.initrd_size);
		if (ret < 0)
			return ret;
		ld.initrd_fd = ret;
		if (ld.initrd_size == 0) {
			ret = x86_load_fail(&ld, -EINVAL, "initrd %s: empty file", initrd_path);
			goto out;
		}
	}
	ret = read_kernel(&ld, &image);
	if (ret)
		goto out;
	if (is_bzimage(image, ld.image_len)) {
		ret = x86_load_bzimage(&ld, out);
	} else if (ld.image_len >= 4 && memcmp(image,
	                                       "\x7f"
	                                       "ELF",
	                                       4) == 0) {
		ret = x86_load_elf(&ld, out);
	} else {
		ret = x86_load_fail(&ld, -ENOEXEC,
		                    "%s: not a kernel image: no bzImage (HdrS) or ELF magic",
		                    kernel_path);
	}
out:
	free(image);
	if (ld.initrd_fd >= 0)
		close(ld.initrd_fd);
	return ret;
}

int x86_check_kernel(const char *kernel_path, char *err, size_t errlen)
{
	struct x86_load ld = { .kernel_path = kernel_path, .err = err, .errlen = errlen };
	struct bzimage_info bz;
	struct elf_info elf;
	const char *why = "";
	uint64_t size;
	uint8_t *image;
	int fd, ret;

	fd = open_input(&ld, "", kernel_path, &size);
	if (fd < 0)
		return fd;
	if (size == 0) {
		close(fd);
		return x86_load_fail(&ld, -EINVAL, "%s: empty file", kernel_path);
	}
	image = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (image == MAP_FAILED)
		return x86_load_fail(&ld, -errno, "%s: %s", kernel_path, strerror(errno));
	if (is_bzimage(image, (size_t)size)) {
		ret = bzimage_parse(image, (size_t)size, &bz, &why);
		if (ret && bz.protocol)
			x86_load_fail(&ld, ret, "%s: %s (file has boot protocol %u.%02u)", kernel_path,
				      why, bz.protocol >> 8, bz.protocol & 0xff);
		else if (ret)
			x86_load_fail(&ld, ret, "%s: %s", kernel_path, why);
	} else if (size >= 4 && memcmp(image, "\x7f" "ELF", 4) == 0) {
		ret = elf_parse(image, (size_t)size, &elf, &why);
		if (ret)
			x86_load_fail(&ld, ret, "%s: %s", kernel_path, why);
	} else {
		ret = x86_load_fail(&ld, -ENOEXEC,
				    "%s: not a kernel image: no bzImage (HdrS) or ELF magic",
				    kernel_path);
	}
	munmap(image, (size_t)size);
	return ret;
}

int x86_boot_set_rsdp(struct guest_mem *mem, const struct x86_boot_info *bi, uint64_t rsdp_addr)
{
	uint8_t v[8];

	le64_put(v, rsdp_addr);
	switch (bi->mode) {
	case X86_BOOT_PVH:
		return guest_mem_write(mem, bi->boot_arg + HVM_SI_RSDP_PADDR, v, sizeof(v));
	case X86_BOOT_LINUX64:
	case X86_BOOT_LINUX32:
		return guest_mem_write(mem, bi->boot_arg + BP_ACPI_RSDP_ADDR, v, sizeof(v));
	case X86_BOOT_MULTIBOOT:
		break;
	}
	return 0;
}

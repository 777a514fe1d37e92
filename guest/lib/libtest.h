/* libtest.h: the freestanding test library every guest program links with:
 * console and printf, kvm-unit-tests style reports, command-line parameters,
 * string helpers, checksums, TSC time, ring-0 requests and port I/O. */
#pragma once
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "abi.h"

#define __noreturn __attribute__((noreturn))
#define __printf(a, b) __attribute__((format(printf, a, b)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + (a)-1) & ~((__typeof__(x))(a)-1))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define barrier() __asm__ volatile("" ::: "memory")

/* Each program names itself once: TEST_PROGRAM("hello"); */
extern const char test_name[];
#define TEST_PROGRAM(name) const char test_name[] = name

/* The program's entry, called in ring 3 after the library has set up the
 * console and parsed the command line into argv (the words, kernel-style). */
int main(int argc, char **argv);

/* ---- port I/O and MMIO (fine in ring 3: IOPL=3, pages are user) ---- */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t mmio_read32(uint64_t addr) { return *(volatile uint32_t *)addr; }
static inline void mmio_write32(uint64_t addr, uint32_t v) { *(volatile uint32_t *)addr = v; }
static inline uint8_t mmio_read8(uint64_t addr) { return *(volatile uint8_t *)addr; }

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

/* ---- ring-0 requests (see abi.h) ---- */
static inline uint64_t ring0_request(uint32_t req, uint64_t a, uint64_t b)
{
	uint64_t rax = REQ_MAGIC | req;
	__asm__ volatile("ud2" : "+a"(rax) : "D"(a), "S"(b) : "memory");
	return rax;
}
static inline void wait_for_interrupt(void) { ring0_request(REQ_WAIT_IRQ, 0, 0); }
static inline void ring3_set_if(bool on) { ring0_request(REQ_SET_IF, on, 0); }
static inline uint64_t rdmsr(uint32_t msr) { return ring0_request(REQ_RDMSR, msr, 0); }
static inline void wrmsr(uint32_t msr, uint64_t v) { ring0_request(REQ_WRMSR, msr, v); }
static inline uint64_t read_cr(int n) { return ring0_request(REQ_READ_CR, n, 0); }

/* Interrupt counts per vector, bumped by the ring-0 handler. */
extern volatile uint32_t irq_counts[256];
/* Interrupts taken between the sti and the hlt of wait_for_interrupt (a
 * host that ignores the STI interrupt shadow; never on hardware), and
 * whether the handler then skips that hlt (default true; false: the hlt
 * waits for the next interrupt, as the host would have it). */
extern volatile uint64_t irq_before_hlt;
extern volatile bool wait_hlt_fixup;

/* ---- exit ---- */
#define DEBUG_EXIT_PORT 0xF4
/* Ends the VM: the VMM exits with status (code << 1) | 1. */
void __noreturn exit(int code);
/* Prints "FAIL <name>: reason" and exits with code 1. */
void __noreturn __printf(1, 2) fail(const char *fmt, ...);

/* ---- console (16550A at 0x3F8) ---- */
void console_init(void);
void console_write(const char *s, size_t len);
void putchar(int c);

/* Nonblocking: returns a received byte or -1. */
int console_getc(void);

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int __printf(3, 4) snprintf(char *buf, size_t size, const char *fmt, ...);
int __printf(1, 2) printf(const char *fmt, ...);
int vprintf(const char *fmt, va_list ap);

/* ---- reports ---- */
/* Records one check; prints "ok: msg" or "not ok: msg". Returns cond. */
bool __printf(2, 3) report(bool cond, const char *fmt, ...);
void __printf(1, 2) report_info(const char *fmt, ...);
/* Prints the totals and the final "PASS <name>" / "FAIL <name>: ..." line;
 * returns the exit code (0 if every check passed). */
int report_summary(void);

/* ---- strings ---- */
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
/* Parses decimal or 0x-hex with an optional K/M/G suffix; returns false on
 * junk. */
bool parse_u64(const char *s, uint64_t *out);

/* ---- command line ---- */
const char *cmdline(void);
/* Value of key=value on the command line, or NULL. */
const char *param_get(const char *key);
uint64_t param_u64(const char *key, uint64_t def);
const char *param_str(const char *key, const char *def);

/* ---- checksums and pseudo-random numbers ---- */
uint32_t crc32_update(uint32_t crc, const void *buf, size_t len); /* zlib's crc32 */
static inline uint32_t crc32(const void *buf, size_t len) { return crc32_update(0, buf, len); }
static inline uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* ---- time ---- */
/* TSC ticks per second: from KVM's pvclock scale when running on KVM, else
 * CPUID 0x15/0x16, else a guess of 2 GHz. Used for timeouts and
 * human-readable rates only; the host does the real timing. */
uint64_t tsc_hz(void);
static inline uint64_t tsc_deadline_ms(uint64_t ms) { return rdtsc() + tsc_hz() / 1000 * ms; }
static inline bool tsc_expired(uint64_t deadline) { return (int64_t)(rdtsc() - deadline) >= 0; }
void delay_us(uint64_t us);

/* ---- boot information ---- */
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};
struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};
#define HVM_START_MAGIC 0x336ec578
extern uint64_t boot_start_info;
extern char _image_start[], _end[];

/* Largest RAM range of the PVH memory map at or above the image's end:
 * returns false when there is no map. */
bool ram_free_range(uint64_t *base, uint64_t *size);

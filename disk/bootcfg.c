/* bootcfg.c: the default entry of a grub.cfg or of BLS entries, and GRUB's
 * environment block (bootcfg.h). The input is an image's untrusted bytes:
 * every length is bounded, nothing is evaluated but `set`. */
#include "bootcfg.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORD_MAX   4096 /* one word of grub.cfg, expanded */
#define WORDS_MAX  256  /* words of one command */
#define ITEMS_MAX  512  /* menu entries and submenus */
#define DEPTH_MAX  16   /* nested { } blocks */

void boot_vars_init(struct boot_vars *v)
{
	v->nr = 0;
}

const char *boot_vars_get(const struct boot_vars *v, const char *name)
{
	for (unsigned i = 0; i < v->nr; i++)
		if (!strcmp(v->name[i], name))
			return v->value[i];
	return NULL;
}

void boot_vars_set(struct boot_vars *v, const char *name, const char *value)
{
	unsigned i;

	if (strlen(name) >= sizeof(v->name[0]) || strlen(value) >= sizeof(v->value[0]))
		return;
	for (i = 0; i < v->nr; i++)
		if (!strcmp(v->name[i], name))
			break;
	if (i == v->nr) {
		if (v->nr >= BOOTCFG_VARS_MAX)
			return;
		v->nr++;
		strcpy(v->name[i], name);
	}
	strcpy(v->value[i], value);
}

static int fail(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return ret;
}

static bool var_name_ok(const char *s, size_t n)
{
	if (!n || n >= 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

int grubenv_parse(struct boot_vars *v, const char *buf, size_t len, char *err, size_t errlen)
{
	static const char magic[] = "# GRUB Environment Block\n";
	const char *p = buf, *end = buf + len;

	if (len > BOOTCFG_MAX_SIZE || len < sizeof(magic) - 1 || memcmp(buf, magic, sizeof(magic) - 1))
		return fail(err, errlen, -EINVAL, "grubenv: not a GRUB environment block");
	p += sizeof(magic) - 1;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *eq;
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char name[64], value[512];

		eq = memchr(p, '=', n);
		if (*p != '#' && eq && var_name_ok(p, (size_t)(eq - p)) &&
		    (size_t)(p + n - eq - 1) < sizeof(value) && !memchr(p, '\0', n)) {
			memcpy(name, p, (size_t)(eq - p));
			name[eq - p] = '\0';
			memcpy(value, eq + 1, (size_t)(p + n - eq - 1));
			value[p + n - eq - 1] = '\0';
			boot_vars_set(v, name, value);
		}
		p += n + (nl ? 1 : 0);
	}
	return 0;
}

/* --- grub.cfg: a lexer for GRUB's shell-like script, and a reader that
 * keeps the menu and executes `set` only --- */

enum tok { T_EOF, T_SEP, T_LBRACE, T_RBRACE, T_WORD };

struct item {
	char title[256], id[256];
	int parent;      /* index of the submenu holding it, -1 top level */
	bool submenu;
	unsigned line;
	char **kwords;   /* the first linux line's words after the command (NULL none) */
	unsigned nr_kwords;
	char **initrd;   /* the first initrd line's words */
	unsigned nr_initrd;
};

struct grub {
	const char *p, *end;
	unsigned line;
	struct boot_vars *vars;
	char word[WORD_MAX];
	size_t wlen;
	bool quoted;
	char deflt[512];
	struct item *items;
	unsigned nr_items;
	char *err;
	size_t errlen;
	bool failed;
};

static int gfail(struct grub *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int gfail(struct grub *g, const char *fmt, ...)
{
	char msg[384];
	va_list ap;

	if (g->failed)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(g->err, g->errlen, "grub.cfg line %u: %s", g->line, msg);
	g->failed = true;
	return -EINVAL;
}

static int put(struct grub *g, char c)
{
	if (g->wlen + 1 >= sizeof(g->word))
		return gfail(g, "a word longer than %d bytes", WORD_MAX - 1);
	g->word[g->wlen++] = c;
	return 0;
}

static int put_str(struct grub *g, const char *s)
{
	for (; *s; s++)
		if (put(g, *s))
			return -EINVAL;
	return 0;
}

static bool is_delim(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';';
}

/* $name or ${name} at g->p (just past the '$'). */
static int expand(struct grub *g)
{
	char name[64];
	size_t n = 0;
	const char *v;

	if (g->p < g->end && *g->p == '{') {
		const char *close = g->p + 1;

		while (close < g->end && (isalnum((unsigned char)*close) || strchr("_?#@*", *close)) &&
		       *close)
			close++;
		if (close >= g->end || *close != '}')
			return gfail(g, "unterminated ${");
		n = (size_t)(close - g->p - 1);
		if (n >= sizeof(name))
			return gfail(g, "a variable name longer than 63 bytes");
		memcpy(name, g->p + 1, n);
		g->p = close + 1;
	} else if (g->p < g->end && strchr("?#@*", *g->p) && *g->p) {
		name[n++] = *g->p++;
	} else {
		while (g->p < g->end && (isalnum((unsigned char)*g->p) || *g->p == '_')) {
			if (n + 1 >= sizeof(name))
				return gfail(g, "a variable name longer than 63 bytes");
			name[n++] = *g->p++;
		}
		if (!n)
			return put(g, '$');
	}
	name[n] = '\0';
	v = boot_vars_get(g->vars, name);
	/* Set by grub.cfg's own header where GRUB supports menu ids. */
	if (!v && !strcmp(name, "menuentry_id_option"))
		v = "--id";
	return v ? put_str(g, v) : 0;
}

static enum tok next(struct grub *g)
{
	for (;;) { /* blanks, line continuations, comments */
		if (g->p >= g->end)
			return T_EOF;
		if (*g->p == ' ' || *g->p == '\t' || *g->p == '\r') {
			g->p++;
		} else if (*g->p == '\\' && g->p + 1 < g->end && g->p[1] == '\n') {
			g->p += 2;
			g->line++;
		} else if (*g->p == '#') {
			while (g->p < g->end && *g->p != '\n')
				g->p++;
		} else {
			break;
		}
	}
	if (*g->p == '\n' || *g->p == ';') {
		g->line += *g->p == '\n';
		g->p++;
		return T_SEP;
	}
	if ((*g->p == '{' || *g->p == '}') && (g->p + 1 == g->end || is_delim(g->p[1])))
		return *g->p++ == '{' ? T_LBRACE : T_RBRACE;
	g->wlen = 0;
	g->quoted = false;
	while (g->p < g->end && !is_delim(*g->p)) {
		char c = *g->p++;

		if (c == '\0') {
			gfail(g, "a NUL byte");
		} else if (c == '\\') {
			if (g->p >= g->end)
				break;
			if (*g->p == '\n')
				g->line++;
			else
				put(g, *g->p);
			g->p++;
		} else if (c == '\'') {
			const char *q = memchr(g->p, '\'', (size_t)(g->end - g->p));

			if (!q) {
				gfail(g, "unterminated quote (')");
				break;
			}
			g->quoted = true;
			for (; g->p < q && !g->failed; g->p++) {
				g->line += *g->p == '\n';
				put(g, *g->p);
			}
			g->p = q + 1;
		} else if (c == '"') {
			g->quoted = true;
			while (!g->failed) {
				if (g->p >= g->end) {
					gfail(g, "unterminated quote (\")");
					break;
				}
				c = *g->p++;
				if (c == '"')
					break;
				if (c == '\n')
					g->line++;
				if (c == '\\' && g->p < g->end && strchr("$\"\\\n", *g->p) && *g->p) {
					if (*g->p != '\n')
						put(g, *g->p);
					else
						g->line++;
					g->p++;
				} else if (c == '$') {
					expand(g);
				} else {
					put(g, c);
				}
			}
		} else if (c == '$') {
			expand(g);
		} else {
			put(g, c);
		}
		if (g->failed)
			return T_EOF;
	}
	g->word[g->wlen] = '\0';
	return T_WORD;
}

struct cmd {
	unsigned n;
	unsigned line; /* of its first word */
	char *w[WORDS_MAX];
};

static void cmd_free(struct cmd *c)
{
	for (unsigned i = 0; i < c->n; i++)
		free(c->w[i]);
	c->n = 0;
}

/* Words up to the command's end; returns what ended it. */
static enum tok read_cmd(struct grub *g, struct cmd *c)
{
	enum tok t;

	c->n = 0;
	c->line = g->line;
	while ((t = next(g)) == T_WORD) {
		if (!g->wlen && !g->quoted)
			continue; /* an unquoted expansion to nothing is no word */
		if (c->n >= WORDS_MAX) {
			gfail(g, "a command of more than %d words", WORDS_MAX);
			return T_EOF;
		}
		if (!(c->w[c->n] = strdup(g->word))) {
			gfail(g, "out of memory");
			return T_EOF;
		}
		c->n++;
	}
	return t;
}

static char **words_dup(const struct cmd *c, unsigned from, unsigned *n)
{
	char **w = calloc(c->n - from + 1, sizeof(*w));

	*n = 0;
	if (!w)
		return NULL;
	for (unsigned i = from; i < c->n; i++) {
		if (!(w[*n] = strdup(c->w[i])))
			break;
		(*n)++;
	}
	return w;
}

static const char *const opt_with_arg[] = { "--class", "--users", "--hotkey", "--id", "--source" };

/* menuentry/submenu TITLE [options]: a new item under parent. */
static int new_item(struct grub *g, const struct cmd *c, int parent)
{
	struct item *it;

	if (g->nr_items >= ITEMS_MAX)
		return gfail(g, "more than %d menu entries", ITEMS_MAX);
	it = &g->items[g->nr_items];
	memset(it, 0, sizeof(*it));
	it->parent = parent;
	it->submenu = !strcmp(c->w[0], "submenu");
	it->line = c->line;
	for (unsigned i = 1; i < c->n; i++) {
		const char *w = c->w[i];
		bool arg = false;

		if (!strncmp(w, "--id=", 5)) {
			snprintf(it->id, sizeof(it->id), "%s", w + 5);
			continue;
		}
		for (size_t k = 0; k < sizeof(opt_with_arg) / sizeof(opt_with_arg[0]); k++)
			arg |= !strcmp(w, opt_with_arg[k]);
		if (arg) {
			if (i + 1 < c->n && !strcmp(w, "--id"))
				snprintf(it->id, sizeof(it->id), "%s", c->w[i + 1]);
			i++;
		} else if (!strncmp(w, "--", 2)) {
			continue;
		} else if (!it->title[0]) {
			snprintf(it->title, sizeof(it->title), "%s", w);
		}
	}
	if (!it->title[0])
		return gfail(g, "%s without a title", c->w[0]);
	return (int)g->nr_items++;
}

/* if/elif/else/fi: a condition GRUB would evaluate the same way here is
 * evaluated (`[ STR ]`, `-n`, `-z`, `=`, `==`, `!=`); others (file tests,
 * commands as conditions, loops) are unknown, and then every branch is
 * read, in order. */
enum cond { C_FALSE, C_TRUE, C_UNKNOWN };

struct conds {
	unsigned n;
	struct {
		enum cond now;
		bool taken, unknown;
	} f[DEPTH_MAX];
};

static enum cond test_cond(const struct cmd *c, unsigned from)
{
	char *const *w = c->w + from;
	unsigned n = c->n - from;

	if (n < 2 || strcmp(w[0], "[") || strcmp(w[n - 1], "]"))
		return C_UNKNOWN;
	w++;
	n -= 2;
	if (n <= 1)
		return n && w[0][0] ? C_TRUE : C_FALSE;
	if (n == 2 && (!strcmp(w[0], "-n") || !strcmp(w[0], "-z")))
		return !w[1][0] == (w[0][1] == 'z') ? C_TRUE : C_FALSE;
	if (n == 3 && (!strcmp(w[1], "=") || !strcmp(w[1], "==")))
		return strcmp(w[0], w[2]) ? C_FALSE : C_TRUE;
	if (n == 3 && !strcmp(w[1], "!="))
		return strcmp(w[0], w[2]) ? C_TRUE : C_FALSE;
	return C_UNKNOWN;
}

static bool cond_active(const struct conds *k)
{
	for (unsigned i = 0; i < k->n; i++)
		if (k->f[i].now == C_FALSE)
			return false;
	return true;
}

/* Take the command's leading keywords; the index of its first word left
 * (c->n when the rest is a condition). */
static unsigned cond_step(struct grub *g, struct conds *k, const struct cmd *c)
{
	unsigned s = 0;

	while (s < c->n) {
		const char *w = c->w[s];

		if (!strcmp(w, "then") || !strcmp(w, "do")) {
			s++;
		} else if (!strcmp(w, "else")) {
			if (k->n && k->f[k->n - 1].now != C_UNKNOWN)
				k->f[k->n - 1].now = k->f[k->n - 1].taken ? C_FALSE : C_TRUE;
			s++;
		} else if (!strcmp(w, "fi") || !strcmp(w, "done")) {
			if (k->n)
				k->n--;
			s++;
		} else if (!strcmp(w, "if") || !strcmp(w, "while") || !strcmp(w, "for") ||
			   !strcmp(w, "until")) {
			if (k->n >= DEPTH_MAX) {
				gfail(g, "conditions nested more than %d deep", DEPTH_MAX);
				return c->n;
			}
			k->f[k->n].now = w[0] == 'i' ? test_cond(c, s + 1) : C_UNKNOWN;
			k->f[k->n].taken = k->f[k->n].now == C_TRUE;
			k->f[k->n].unknown = k->f[k->n].now == C_UNKNOWN;
			k->n++;
			return c->n;
		} else if (!strcmp(w, "elif")) {
			if (k->n) {
				typeof(k->f[0]) *f = &k->f[k->n - 1];

				f->now = f->taken ? C_FALSE : f->unknown ? C_UNKNOWN : test_cond(c, s + 1);
				f->taken |= f->now == C_TRUE;
				f->unknown |= f->now == C_UNKNOWN;
			}
			return c->n;
		} else {
			break;
		}
	}
	return s;
}

/* The statements of one block. entry: the menu entry it is the body of (-1
 * none); menu: the submenu whose entries it may hold (-1 top level);
 * ignored: a function's body (no entries, no default). */
static int block(struct grub *g, unsigned depth, int entry, int menu, bool ignored)
{
	struct conds k = { 0 };
	struct cmd c;

	if (depth > DEPTH_MAX)
		return gfail(g, "blocks nested more than %d deep", DEPTH_MAX);
	for (;;) {
		enum tok t = read_cmd(g, &c);
		unsigned s, line = g->line;
		const char *w0;
		bool skip;

		if (g->failed)
			goto out;
		s = cond_step(g, &k, &c);
		if (g->failed)
			goto out;
		skip = ignored || !cond_active(&k);
		w0 = s < c.n ? c.w[s] : "";
		if (t == T_LBRACE) {
			int it = -1;

			if ((!strcmp(w0, "menuentry") || !strcmp(w0, "submenu")) && !skip &&
			    entry < 0) {
				struct cmd sub = { .n = c.n - s, .line = c.line };

				memcpy(sub.w, c.w + s, sizeof(sub.w[0]) * sub.n);
				it = new_item(g, &sub, menu);
				if (it < 0)
					goto out;
			}
			if (it >= 0 && g->items[it].submenu)
				block(g, depth + 1, -1, it, false);
			else if (it >= 0)
				block(g, depth + 1, it, menu, false);
			else /* a function, an entry inside an entry, a false branch */
				block(g, depth + 1, entry, menu, true);
			cmd_free(&c);
			if (g->failed)
				goto out;
			continue;
		}
		g->line = c.line; /* messages name the command's first line */
		if (skip) {
			;
		} else if (!strcmp(w0, "set") || (s + 1 == c.n && strchr(w0, '=') && w0[0] != '=')) {
			for (unsigned i = s + (w0[0] == 's' && !strcmp(w0, "set")); i < c.n; i++) {
				char *eq = strchr(c.w[i], '=');

				if (!eq || !var_name_ok(c.w[i], (size_t)(eq - c.w[i])))
					continue;
				*eq = '\0';
				boot_vars_set(g->vars, c.w[i], eq + 1);
				if (!strcmp(c.w[i], "default") && eq[1] && entry < 0 && menu < 0)
					snprintf(g->deflt, sizeof(g->deflt), "%s", eq + 1);
			}
		} else if (entry >= 0 &&
			   (!strcmp(w0, "linux") || !strcmp(w0, "linux16") ||
			    !strcmp(w0, "linuxefi"))) {
			struct item *it = &g->items[entry];

			if (c.n == s + 1) {
				gfail(g, "%s without a kernel file", w0);
				goto out;
			}
			if (!it->kwords && !(it->kwords = words_dup(&c, s + 1, &it->nr_kwords))) {
				gfail(g, "out of memory");
				goto out;
			}
		} else if (entry >= 0 &&
			   (!strcmp(w0, "initrd") || !strcmp(w0, "initrd16") ||
			    !strcmp(w0, "initrdefi"))) {
			struct item *it = &g->items[entry];

			if (!it->initrd && !(it->initrd = words_dup(&c, s + 1, &it->nr_initrd))) {
				gfail(g, "out of memory");
				goto out;
			}
		}
		g->line = line;
		cmd_free(&c);
		if (t == T_EOF) {
			if (depth)
				return gfail(g, "end of file inside a { } block (a missing })");
			return 0;
		}
		if (t == T_RBRACE) {
			if (!depth)
				return gfail(g, "} without {");
			return 0;
		}
	}
out:
	cmd_free(&c);
	return -EINVAL;
}

/* "(hd0,gpt2)/boot/x" -> "/boot/x"; absolute paths only. */
static int strip_device(struct grub *g, const char *what, const char *in, char *out, size_t outlen)
{
	const char *p = in;

	if (*p == '(') {
		p = strchr(p, ')');
		if (!p)
			return fail(g->err, g->errlen, -EINVAL, "grub.cfg: %s \"%.200s\": no ) after (",
				    what, in);
		p++;
	}
	if (*p != '/')
		return fail(g->err, g->errlen, -EINVAL, "grub.cfg: %s \"%.200s\" is not an absolute "
			    "path", what, in);
	if (strlen(p) >= outlen)
		return fail(g->err, g->errlen, -EINVAL, "grub.cfg: %s path too long", what);
	strcpy(out, p);
	return 0;
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* The item that default names (">"-separated path), or -1 with err. */
static int find_default(struct grub *g)
{
	char path[512], *save = NULL, *part;
	int menu = -1, found = -1;

	snprintf(path, sizeof(path), "%s", g->deflt);
	for (part = strtok_r(path, ">", &save); part; part = strtok_r(NULL, ">", &save)) {
		unsigned idx = 0, want = 0, count = 0;
		bool num = all_digits(part);

		if (found >= 0 && !g->items[found].submenu)
			return fail(g->err, g->errlen, -ENOENT, "grub.cfg: default entry \"%s\": "
				    "\"%s\" is not a submenu", g->deflt, g->items[found].title);
		if (num)
			want = (unsigned)strtoul(part, NULL, 10);
		found = -1;
		for (unsigned i = 0; i < g->nr_items; i++) {
			if (g->items[i].parent != menu)
				continue;
			count++;
			if (found < 0 && (num ? idx == want : (!strcmp(g->items[i].title, part) ||
							       !strcmp(g->items[i].id, part))))
				found = (int)i;
			idx++;
		}
		if (found < 0)
			return fail(g->err, g->errlen, -ENOENT, "grub.cfg: default entry \"%s\": no "
				    "entry \"%s\" (%u %s)", g->deflt, part, count,
				    menu < 0 ? "top-level entries" : "entries in that submenu");
		menu = found;
	}
	if (found < 0)
		return fail(g->err, g->errlen, -ENOENT, "grub.cfg: default entry \"%s\" names no "
			    "entry", g->deflt);
	if (g->items[found].submenu)
		return fail(g->err, g->errlen, -ENOENT, "grub.cfg: default entry \"%s\" is the "
			    "submenu \"%s\"; name one of its entries (\"%s>0\")", g->deflt,
			    g->items[found].title, g->deflt);
	return found;
}

static int entry_from_item(struct grub *g, const struct item *it, struct boot_entry *out)
{
	size_t n;

	memset(out, 0, sizeof(*out));
	snprintf(out->title, sizeof(out->title), "%s", it->title);
	if (!it->kwords)
		return fail(g->err, g->errlen, -ENOENT, "grub.cfg: the default entry \"%s\" (line "
			    "%u) has no linux line", it->title, it->line);
	if (strip_device(g, "kernel", it->kwords[0], out->kernel, sizeof(out->kernel)))
		return -EINVAL;
	/* GRUB's linux command puts BOOT_IMAGE= first, as given. */
	n = (size_t)snprintf(out->options, sizeof(out->options), "BOOT_IMAGE=%s", it->kwords[0]);
	for (unsigned i = 1; i < it->nr_kwords && n < sizeof(out->options); i++)
		n += (size_t)snprintf(out->options + n, sizeof(out->options) - n, " %s",
				      it->kwords[i]);
	if (n >= sizeof(out->options))
		return fail(g->err, g->errlen, -EINVAL, "grub.cfg: the command line of \"%s\" is "
			    "longer than %d bytes", it->title, BOOTCFG_CMDLINE_MAX - 1);
	for (unsigned i = 0; i < it->nr_initrd; i++) {
		if (i >= BOOTCFG_INITRD_MAX)
			return fail(g->err, g->errlen, -EINVAL, "grub.cfg: \"%s\" has more than %d "
				    "initrd files", it->title, BOOTCFG_INITRD_MAX);
		if (strip_device(g, "initrd", it->initrd[i], out->initrd[i], sizeof(out->initrd[i])))
			return -EINVAL;
		out->nr_initrd++;
	}
	return 0;
}

static const char *const builtin[][2] = {
	{ "feature_menuentry_id", "y" },     { "feature_platform_search_hint", "y" },
	{ "feature_all_video_module", "y" }, { "feature_default_font_path", "y" },
	{ "feature_timeout_style", "y" },    { "grub_platform", "pc" },
	{ "grub_cpu", "i386" },
};

int grubcfg_default_entry(const char *buf, size_t len, struct boot_vars *vars,
			  struct boot_entry *out, char *err, size_t errlen)
{
	struct grub *g;
	int ret, idx;

	if (len > BOOTCFG_MAX_SIZE)
		return fail(err, errlen, -EINVAL, "grub.cfg: larger than %u bytes", BOOTCFG_MAX_SIZE);
	g = calloc(1, sizeof(*g));
	if (!g || !(g->items = calloc(ITEMS_MAX, sizeof(*g->items)))) {
		free(g);
		return fail(err, errlen, -ENOMEM, "out of memory");
	}
	g->p = buf;
	g->end = buf + len;
	g->line = 1;
	g->vars = vars;
	g->err = err;
	g->errlen = errlen;
	/* What GRUB 2.06 on a PC sets itself, as grub.cfg's tests expect. */
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		if (!boot_vars_get(vars, builtin[i][0]))
			boot_vars_set(vars, builtin[i][0], builtin[i][1]);
	ret = block(g, 0, -1, -1, false);
	if (!ret && !g->nr_items)
		ret = fail(err, errlen, -ENOENT, "grub.cfg: no menuentry");
	if (!ret) {
		if (!g->deflt[0])
			strcpy(g->deflt, "0");
		idx = find_default(g);
		ret = idx < 0 ? idx : entry_from_item(g, &g->items[idx], out);
	}
	for (unsigned i = 0; i < g->nr_items; i++) {
		for (unsigned k = 0; k < g->items[i].nr_kwords; k++)
			free(g->items[i].kwords[k]);
		for (unsigned k = 0; k < g->items[i].nr_initrd; k++)
			free(g->items[i].initrd[k]);
		free(g->items[i].kwords);
		free(g->items[i].initrd);
	}
	free(g->items);
	free(g);
	return ret;
}

/* --- Boot Loader Specification entries --- */

/* Append src to out (at *n), expanding $name / ${name} from vars. */
static int append_expanded(char *out, size_t outlen, size_t *n, const char *src, size_t len,
			   const struct boot_vars *vars)
{
	for (size_t i = 0; i < len;) {
		char name[64];
		size_t k = 0;
		const char *v = NULL;

		if (src[i] == '$' && i + 1 < len &&
		    (src[i + 1] == '{' || isalnum((unsigned char)src[i + 1]) || src[i + 1] == '_')) {
			bool brace = src[i + 1] == '{';

			i += 1 + brace;
			while (i < len && (isalnum((unsigned char)src[i]) || src[i] == '_') &&
			       k + 1 < sizeof(name))
				name[k++] = src[i++];
			if (brace && i < len && src[i] == '}')
				i++;
			name[k] = '\0';
			v = boot_vars_get(vars, name);
			for (; v && *v; v++) {
				if (*n + 1 >= outlen)
					return -1;
				out[(*n)++] = *v;
			}
			continue;
		}
		if (*n + 1 >= outlen)
			return -1;
		out[(*n)++] = src[i++];
	}
	out[*n] = '\0';
	return 0;
}

static int bls_path(const char *name, const char *key, const char *v, size_t n, char *out,
		    size_t outlen, char *err, size_t errlen)
{
	if (!n || v[0] != '/')
		return fail(err, errlen, -EINVAL, "%s: %s \"%.*s\" is not an absolute path", name,
			    key, (int)(n > 200 ? 200 : n), v);
	if (n >= outlen)
		return fail(err, errlen, -EINVAL, "%s: %s path too long", name, key);
	memcpy(out, v, n);
	out[n] = '\0';
	return 0;
}

int bls_entry_parse(const char *buf, size_t len, const char *name, const struct boot_vars *vars,
		    struct boot_entry *out, char *err, size_t errlen)
{
	const char *p = buf, *end = buf + len;
	size_t optn = 0;
	bool efi = false;
	unsigned line = 0;

	memset(out, 0, sizeof(*out));
	if (len > BOOTCFG_MAX_SIZE)
		return fail(err, errlen, -EINVAL, "%s: larger than %u bytes", name, BOOTCFG_MAX_SIZE);
	if (memchr(buf, '\0', len))
		return fail(err, errlen, -EINVAL, "%s: a NUL byte (not a text file)", name);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *k, *v, *e;
		size_t kn, vn;

		e = nl ? nl : end;
		line++;
		k = p;
		p = nl ? nl + 1 : end;
		while (k < e && isspace((unsigned char)*k))
			k++;
		while (e > k && isspace((unsigned char)e[-1]))
			e--;
		if (k == e || *k == '#')
			continue;
		for (v = k; v < e && !isspace((unsigned char)*v); v++)
			;
		kn = (size_t)(v - k);
		while (v < e && isspace((unsigned char)*v))
			v++;
		vn = (size_t)(e - v);
		if (kn == 5 && !memcmp(k, "title", 5)) {
			snprintf(out->title, sizeof(out->title), "%.*s", (int)(vn > 255 ? 255 : vn), v);
		} else if (kn == 5 && !memcmp(k, "linux", 5)) {
			if (bls_path(name, "linux", v, vn, out->kernel, sizeof(out->kernel), err, errlen))
				return -EINVAL;
		} else if (kn == 6 && !memcmp(k, "initrd", 6)) {
			/* One or more files, separated by blanks. */
			while (vn) {
				size_t w = 0;

				while (w < vn && !isspace((unsigned char)v[w]))
					w++;
				if (out->nr_initrd >= BOOTCFG_INITRD_MAX)
					return fail(err, errlen, -EINVAL, "%s: more than %d initrd files",
						    name, BOOTCFG_INITRD_MAX);
				if (bls_path(name, "initrd", v, w, out->initrd[out->nr_initrd],
					     sizeof(out->initrd[0]), err, errlen))
					return -EINVAL;
				out->nr_initrd++;
				v += w;
				vn -= w;
				while (vn && isspace((unsigned char)*v))
					v++, vn--;
			}
		} else if (kn == 7 && !memcmp(k, "options", 7)) {
			if (optn && optn + 1 < sizeof(out->options))
				out->options[optn++] = ' ';
			if (append_expanded(out->options, sizeof(out->options), &optn, v, vn, vars))
				return fail(err, errlen, -EINVAL, "%s line %u: the options are longer "
					    "than %d bytes", name, line, BOOTCFG_CMDLINE_MAX - 1);
		} else if (kn == 3 && !memcmp(k, "efi", 3)) {
			efi = true;
		}
	}
	if (!out->kernel[0])
		return fail(err, errlen, -EINVAL, efi ? "%s: an EFI program entry (efi), not a Linux "
			    "kernel (no linux key)" : "%s: no linux key", name);
	if (!out->title[0])
		snprintf(out->title, sizeof(out->title), "%s", name);
	return 0;
}

static void conf_stem(const char *name, char *out, size_t outlen)
{
	size_t n = strlen(name);

	if (n > 5 && !strcmp(name + n - 5, ".conf"))
		n -= 5;
	snprintf(out, outlen, "%.*s", (int)n, name);
}

int bls_pick_default(const char *const *names, unsigned n, const char *want)
{
	int best = -1;

	for (int pass = want && *want ? 0 : 1; pass < 2 && best < 0; pass++) {
		for (unsigned i = 0; i < n; i++) {
			char stem[256], bstem[256];

			conf_stem(names[i], stem, sizeof(stem));
			if (!pass && fnmatch(want, names[i], 0) && fnmatch(want, stem, 0))
				continue;
			if (best >= 0) {
				conf_stem(names[best], bstem, sizeof(bstem));
				if (strverscmp(stem, bstem) <= 0)
					continue;
			}
			best = (int)i;
		}
	}
	return best;
}

void bls_loader_default(const char *buf, size_t len, char *out, size_t outlen)
{
	const char *p = buf, *end = buf + len;

	out[0] = '\0';
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end, *v;

		while (p < e && isspace((unsigned char)*p))
			p++;
		if (e - p > 7 && !memcmp(p, "default", 7) && isspace((unsigned char)p[7])) {
			for (v = p + 7; v < e && isspace((unsigned char)*v); v++)
				;
			while (e > v && isspace((unsigned char)e[-1]))
				e--;
			snprintf(out, outlen, "%.*s", (int)(e - v), v);
		}
		p = nl ? nl + 1 : end;
	}
}

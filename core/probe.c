/* SPDX-License-Identifier: MIT */
/*
 * core/probe.c: emh_host_probe_plugins, behind `emhost plugins --probe`.
 * A plugin's constructors run inside dlopen, before the loader sees its
 * descriptor, so a plugin can end the process that loads it (a crash, an
 * _Exit) and no check can prevent it.  Here every plugin file is loaded in
 * a child process of its own with the loader's own code (emh__load_plugin);
 * the child sends its verdict and its log lines over a pipe, and a child
 * that dies without a verdict is reported as that file's refusal with how
 * it ended.  One bad file is then one line of the report, not the end of
 * the tool.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <emhost/buf.h>

#include "internal.h"

/* A constructor that never returns is a refusal too, after this long. */
#define PROBE_TIMEOUT_MS 10000

/* What a child writes to its pipe: a kind byte, a 4-byte length, the payload. */
enum { REC_LOG = 'L', REC_DRIVER = 'D', REC_REFUSED = 'R' };

static void rec_write(int fd, char kind, const void *p, size_t n)
{
	uint32_t len = (uint32_t)n;
	char head[5] = {kind};
	memcpy(head + 1, &len, sizeof len);
	const char *parts[2] = {head, p};
	size_t sizes[2] = {sizeof head, n};
	for (int i = 0; i < 2; i++)
		for (size_t off = 0; off < sizes[i];) {
			ssize_t w = write(fd, parts[i] + off, sizes[i] - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				_exit(120); /* the parent is gone: nobody to tell */
			off += (size_t)w;
		}
}

/* The child's log sink: "<level byte><context>\0<message>" records. */
static void child_log(void *ud, int level, const char *context, const char *msg)
{
	emh_buf b = EMH_BUF_INIT;
	char lv = (char)level;
	emh_buf_add(&b, &lv, 1);
	emh_buf_add(&b, context ? context : "", strlen(context ? context : "") + 1);
	emh_buf_adds(&b, msg);
	if (!b.oom)
		rec_write(*(int *)ud, REC_LOG, b.ptr, b.len);
	emh_buf_release(&b);
}

/* In the child: load path with the loader's checks and report; never returns. */
static void child_main(int fd, const char *path, int level)
{
	/* A crash is this probe's answer: the default action (no sanitizer
	 * report standing in for the signal), and no core file. */
	static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS};
	for (size_t i = 0; i < sizeof fatal / sizeof *fatal; i++)
		signal(fatal[i], SIG_DFL);
	struct rlimit none = {0, 0};
	setrlimit(RLIMIT_CORE, &none);
	/* A host with nothing but what the loader uses: its log, drivers and refusals. */
	emh_host *h = calloc(1, sizeof *h);
	if (!h)
		_exit(121);
	h->log = (emh__logger){.fn = child_log, .ud = &fd, .level = level};
	emh_error err;
	emh_error_clear(&err);
	emh__load_plugin(h, path, &err);
	emh_buf b = EMH_BUF_INIT;
	if (h->ndrivers == 1) {
		const emh_driver *d = &h->drivers[0]->d;
		emh_buf_add(&b, d->name, strlen(d->name) + 1);
		emh_buf_add(&b, d->version, strlen(d->version) + 1);
		emh_buf_addf(&b, "%u %u %llu", (unsigned)(d->abi_version >> 16), (unsigned)(d->abi_version & 0xffff),
			     (unsigned long long)d->caps);
		if (!b.oom)
			rec_write(fd, REC_DRIVER, b.ptr, b.len + 1);
	} else {
		emh_buf_adds(&b, h->nrefused ? h->refused[0].reason : err.message[0] ? err.message : "out of memory");
		if (!b.oom)
			rec_write(fd, REC_REFUSED, b.ptr, b.len + 1);
	}
	/* _exit: no destructor, atexit handler or stdio buffer of the parent's runs twice */
	_exit(0);
}

/* Read the child's records until it closes the pipe or the time is up. */
static bool read_all(int fd, emh_buf *in, int64_t deadline_ns)
{
	for (;;) {
		int64_t left = (deadline_ns - emh__now_ns()) / 1000000;
		if (left <= 0)
			return false;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int n = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
		if (n < 0 && errno != EINTR)
			return true;
		if (n <= 0)
			continue;
		char chunk[4096];
		ssize_t r = read(fd, chunk, sizeof chunk);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return true;
		emh_buf_add(in, chunk, (size_t)r);
	}
}

/* How a child without a verdict ended, as a refusal. */
static void ended(int status, bool timed_out, char *why, size_t cap)
{
	if (timed_out)
		snprintf(why, cap, "did not finish loading within %d ms (its process was killed): a constructor "
			 "never returns", PROBE_TIMEOUT_MS);
	else if (WIFSIGNALED(status))
		snprintf(why, cap, "its process was killed by signal %d (%s) while loading: the plugin's code "
			 "(a constructor) crashed", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else if (WIFEXITED(status))
		snprintf(why, cap, "its process exited with status %d while loading: the plugin's code (a "
			 "constructor) ended it", WEXITSTATUS(status));
	else
		snprintf(why, cap, "its process ended while loading (status 0x%x)", (unsigned)status);
}

/* Hand the child's records to the parent's log and to fn. */
static void deliver(const emh__logger *log, const char *path, const emh_buf *in, int status, bool timed_out,
		    emh_probe_fn fn, void *ud)
{
	bool verdict = false;
	size_t off = 0;
	while (!verdict && in->len - off >= 5) {
		char kind = in->ptr[off];
		uint32_t len;
		memcpy(&len, in->ptr + off + 1, sizeof len);
		if (len > in->len - off - 5)
			break; /* cut short: the child died mid-record */
		const char *p = in->ptr + off + 5;
		off += 5 + (size_t)len;
		if (kind == REC_LOG && len >= 2 && memchr(p + 1, '\0', len - 1)) {
			const char *ctx = p + 1;
			emh__log(log, p[0], *ctx ? ctx : NULL, "%.*s", (int)(len - 2 - strlen(ctx)), ctx + strlen(ctx) + 1);
		} else if (kind == REC_REFUSED && len && p[len - 1] == '\0') {
			fn(ud, path, NULL, p);
			verdict = true;
		} else if (kind == REC_DRIVER && len && p[len - 1] == '\0') {
			const char *name = p, *version = name + strlen(name) + 1;
			unsigned major, minor;
			unsigned long long caps;
			if (version < p + len && version + strlen(version) + 1 < p + len &&
			    sscanf(version + strlen(version) + 1, "%u %u %llu", &major, &minor, &caps) == 3) {
				emh_driver_info di = {.name = name, .version = version, .abi_major = major,
						      .abi_minor = minor, .caps = caps, .file = path};
				fn(ud, path, &di, NULL);
				verdict = true;
			}
		}
	}
	if (!verdict) {
		char why[512];
		ended(status, timed_out, why, sizeof why);
		emh__log(log, EMH_LOG_WARN, NULL, "plugin '%s' refused: %s", path, why);
		fn(ud, path, NULL, why);
	}
}

struct probe {
	const emh__logger *log;
	emh_probe_fn fn;
	void *ud;
};

static int probe_one(void *arg, const char *path)
{
	struct probe *pr = arg;
	int fds[2];
	char why[512];
	if (pipe2(fds, O_CLOEXEC) != 0) {
		snprintf(why, sizeof why, "cannot probe it: pipe: %s", strerror(errno));
		pr->fn(pr->ud, path, NULL, why);
		return 0;
	}
	fflush(NULL); /* a constructor that calls exit() would write our buffers twice */
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, sizeof why, "cannot probe it: fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		pr->fn(pr->ud, path, NULL, why);
		return 0;
	}
	if (pid == 0) {
		close(fds[0]);
		child_main(fds[1], path, pr->log->level);
	}
	close(fds[1]);
	emh_buf in = EMH_BUF_INIT;
	bool finished = read_all(fds[0], &in, emh__now_ns() + (int64_t)PROBE_TIMEOUT_MS * 1000000);
	close(fds[0]);
	if (!finished)
		kill(pid, SIGKILL);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (in.oom) {
		emh_buf_release(&in);
		snprintf(why, sizeof why, "cannot probe it: out of memory");
		pr->fn(pr->ud, path, NULL, why);
		return 0;
	}
	deliver(pr->log, path, &in, status, !finished, pr->fn, pr->ud);
	emh_buf_release(&in);
	return 0;
}

int emh_host_probe_plugins(const emh_host_opts *opts, emh_probe_fn fn, void *ud, emh_error *err)
{
	emh_host_opts none = {0};
	if (!opts)
		opts = &none;
	if (!fn)
		return emh_error_set(err, EMH_EINVAL, "emh_host_probe_plugins: no callback given");
	const char *const *env = opts->envp ? opts->envp : (const char *const *)environ;
	emh__logger log = {.fn = opts->log, .ud = opts->log_ud, .level = opts->log_level};
	emh__config cfg;
	int rc = emh__config_parse(&cfg, opts->config_path, env, err);
	if (rc)
		return rc;
	if (!opts->no_plugins) {
		const char *dir = emh__plugin_dir_for(opts->plugin_dir, &cfg, env);
		char why[512];
		int list_errno;
		struct probe pr = {.log = &log, .fn = fn, .ud = ud};
		if (!emh__plugin_dir_ok(&log, dir, "plugin directory", why, sizeof why)) {
			fn(ud, dir, NULL, why);
		} else {
			emh__plugin_foreach(dir, probe_one, &pr, &list_errno);
			if (list_errno) {
				snprintf(why, sizeof why, "cannot list plugin directory: %s", strerror(list_errno));
				fn(ud, dir, NULL, why);
			}
		}
	}
	emh__config_release(&cfg);
	return 0;
}

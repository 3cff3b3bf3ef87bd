# gemini-looper — see README.md.
#
#   make deps     install the Debian packages needed to build and test
#   make          build ./gemini-looper
#   make run      build and run in the foreground with ./config.json
#   make check    unit tests (check, ASan+UBSan) and integration tests
#   make fuzz     run each libFuzzer target FUZZ_SECONDS (60) with its corpus
#   make bench    gemini-looper against nginx (wrk; 5 min): build/bench/
#   make bench-live  the Live API: 200 WebSocket sessions, direct and proxied
#   make bench-pool10k  10,000 keys: POOL10K_OLD's build against this one
#   make install  PREFIX (/usr/local) and DESTDIR honoured

PROG	 = gemini-looper
PREFIX	?= /usr/local
BINDIR	?= $(PREFIX)/sbin
MANDIR	?= $(PREFIX)/share/man
DOCDIR	?= $(PREFIX)/share/doc/$(PROG)
SYSCONFDIR ?= /etc

CC	 = gcc
PKGS	 = openssl libcjson libbsd

# pkg-config runs when a recipe first needs its answer, not when make reads
# this file: in `make deps check` the -dev packages arrive with the first
# goal, after the Makefile was read.  Each answer is then kept (the
# deferred-simple idiom), and a missing package stops the build by name.
pkgconf = $(if $(shell pkg-config --exists $(2) && echo ok),$(shell \
	pkg-config $(1) $(2)),$(error pkg-config cannot find $(2): run \
	'make deps' first))
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(call pkgconf,--cflags,$(PKGS)))$(PKG_CFLAGS)
PKG_LIBS = $(eval PKG_LIBS := $$(call pkgconf,--libs,$(PKGS)))$(PKG_LIBS)
CHECK_CFLAGS = $(eval CHECK_CFLAGS := $$(call pkgconf,--cflags,check))$(CHECK_CFLAGS)
CHECK_LIBS = $(eval CHECK_LIBS := $$(call pkgconf,--libs,check))$(CHECK_LIBS)
# wslay (WebSocket framing): Debian's libwslay-dev ships no .pc file, so
# when pkg-config does not know it, the compiler is asked for its header,
# just as lazily; found that way it is -lwslay.
wslayconf = $(if $(shell pkg-config --exists libwslay && echo ok),$(shell \
	pkg-config $(1) libwslay),$(if $(shell echo '\#include <wslay/wslay.h>' | \
	$(CC) -E -x c - >/dev/null 2>&1 && echo ok),$(2),$(error cannot find \
	wslay (libwslay-dev): run 'make deps' first)))
WSLAY_CFLAGS = $(eval WSLAY_CFLAGS := $$(call wslayconf,--cflags,))$(WSLAY_CFLAGS)
WSLAY_LIBS = $(eval WSLAY_LIBS := $$(call wslayconf,--libs,-lwslay))$(WSLAY_LIBS)

WARN	 = -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
	   -Wmissing-prototypes -Wno-missing-field-initializers
CFLAGS	?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -Isrc -Ishm -Ibuild $(PKG_CFLAGS) \
	   $(WSLAY_CFLAGS)
LDLIBS	 = $(PKG_LIBS) $(WSLAY_LIBS) -lpthread
SAN	 = -fsanitize=address,undefined -fno-omit-frame-pointer \
	   -fno-sanitize-recover=undefined

SRCS	 = $(wildcard src/*.c) $(wildcard shm/*.c)
LIBSRCS	 = $(filter-out src/main.c,$(SRCS))
HDRS	 = $(wildcard src/*.h) $(wildcard shm/*.h) build/web.h
OBJS	 = $(SRCS:%.c=build/%.o)
TOBJS	 = $(SRCS:%.c=build/test/%.o)
TLIBOBJS = $(LIBSRCS:%.c=build/test/%.o)
UNITSRCS = $(wildcard tests/check_*.c)
WEBFILES = $(sort $(wildcard web/*))

DEPS_PKGS = gcc make pkg-config libssl-dev libcjson-dev libbsd-dev \
	    libwslay-dev check \
	    python3 openssl curl procps psmisc tzdata dpkg sysvinit-utils \
	    util-linux mandoc logrotate clang libclang-rt-14-dev \
	    chromium nodejs prometheus
# The browser test (tests/browser) needs npm.  NodeSource's nodejs carries
# its own npm and conflicts with Debian's: ask for Debian's only without it.
DEPS_PKGS += $(if $(shell command -v npm),,npm)

.PHONY: all run demo check unit integration deps bench bench-deps install \
	uninstall clean bench-pool10k bench-live

all: $(PROG)

$(PROG): $(OBJS)
	$(CC) $(ALL_CFLAGS) -o $@ $(OBJS) $(LDLIBS)

build/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

build/test/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -c -o $@ $<

# The dashboard's files, embedded into the binary as C arrays.
build/web.h: $(WEBFILES) tests/embed.sh
	@mkdir -p build
	sh tests/embed.sh $(WEBFILES) > $@.tmp && mv $@.tmp $@

build/test/$(PROG): $(TOBJS)
	$(CC) $(ALL_CFLAGS) $(SAN) -o $@ $(TOBJS) $(LDLIBS)

build/test/check_all: $(UNITSRCS) $(TLIBOBJS) $(HDRS)
	$(CC) $(ALL_CFLAGS) $(SAN) $(CHECK_CFLAGS) -Itests -o $@ $(UNITSRCS) \
	    $(TLIBOBJS) $(LDLIBS) $(CHECK_LIBS)

run: $(PROG)
	./$(PROG) -d -c config.json

# The stand-in Gemini, the proxy with demo keys and a load: see /status.
demo: $(PROG)
	python3 tests/demo.py --bin ./$(PROG)

check: unit fuzz-replay integration

unit: build/test/check_all
	CK_FORK=yes build/test/check_all

# The browser test's npm packages, exactly as the lockfile pins them;
# installed again only when node_modules is missing or the lockfile changed.
BROWSER_NPM = tests/browser/node_modules/.package-lock.json
$(BROWSER_NPM): tests/browser/package.json tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund
	@touch $@

# The SDK tests' packages (tests/sdk), the same way.
SDK_NPM = tests/sdk/node_modules/.package-lock.json
$(SDK_NPM): tests/sdk/package.json tests/sdk/package-lock.json
	npm ci --prefix tests/sdk --no-audit --no-fund
	@touch $@

integration: $(PROG) build/test/$(PROG) $(BROWSER_NPM) $(SDK_NPM)
	python3 tests/standin/selftest.py
	python3 tests/run_integration.py --bin build/test/$(PROG) \
	    --plain-bin ./$(PROG)

deps:
	@sh tests/apt-install.sh $(DEPS_PKGS)

# The benchmark (tests/bench/bench.py, README "Performance") and what only
# it needs: make check does without them.
BENCH_PKGS = nginx wrk python3 openssl procps

bench-deps:
	@sh tests/apt-install.sh $(BENCH_PKGS)

bench: $(PROG) bench-deps
	python3 tests/bench/bench.py --bin ./$(PROG) --out build/bench/results.md

# The Live API alone (tests/bench/live.py; also a section of make bench):
# LIVE_SESSIONS (200) sessions, a turn a second for LIVE_SECONDS (30), straight
# to the stand-in and through the proxy.  Needs no nginx or wrk.
bench-live: $(PROG)
	python3 tests/bench/live.py --bin ./$(PROG) --out build/bench/live.md

# The pool at scale (tests/bench/pool10k.py, README "Issue 12: the pool at
# scale, measured"): another build against this one, 10,000 keys.  Add
# POOL10K_FLAGS=--plain-keys for an old build that takes no key objects.
POOL10K_OLD ?= ./$(PROG)
bench-pool10k: $(PROG)
	python3 tests/bench/pool10k.py --old $(POOL10K_OLD) --new ./$(PROG) \
	    $(POOL10K_FLAGS) --out build/bench/pool10k.md

# The contrib files name the binary as /usr/local/sbin/gemini-looper; the
# installed copies name $(BINDIR)'s.  uninstall removes exactly these files.
INITDIR	?= $(SYSCONFDIR)/init.d
UNITDIR	?= $(PREFIX)/lib/systemd/system
LOGROTATEDIR ?= $(SYSCONFDIR)/logrotate.d
SUBST	 = sed 's|/usr/local/sbin/$(PROG)|$(BINDIR)/$(PROG)|g'

install: $(PROG)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(INITDIR) $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(LOGROTATEDIR) $(DESTDIR)$(DOCDIR)
	install -m 0755 $(PROG) $(DESTDIR)$(BINDIR)/$(PROG)
	install -m 0644 contrib/$(PROG).8 $(DESTDIR)$(MANDIR)/man8/$(PROG).8
	$(SUBST) contrib/$(PROG).init > $(DESTDIR)$(INITDIR)/$(PROG)
	chmod 0755 $(DESTDIR)$(INITDIR)/$(PROG)
	$(SUBST) contrib/$(PROG).service > $(DESTDIR)$(UNITDIR)/$(PROG).service
	chmod 0644 $(DESTDIR)$(UNITDIR)/$(PROG).service
	install -m 0644 contrib/$(PROG).logrotate \
	    $(DESTDIR)$(LOGROTATEDIR)/$(PROG)
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -m 0644 contrib/config.example.json \
	    $(DESTDIR)$(DOCDIR)/config.example.json

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/$(PROG)
	rm -f $(DESTDIR)$(MANDIR)/man8/$(PROG).8
	rm -f $(DESTDIR)$(INITDIR)/$(PROG)
	rm -f $(DESTDIR)$(UNITDIR)/$(PROG).service
	rm -f $(DESTDIR)$(LOGROTATEDIR)/$(PROG)
	rm -f $(DESTDIR)$(DOCDIR)/README.md
	rm -f $(DESTDIR)$(DOCDIR)/config.example.json
	-rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null

# Fuzzing (tests/fuzz/).  make fuzz builds each libFuzzer target with clang
# and runs it FUZZ_SECONDS with its seed corpus, its regressions and its
# dictionary; what it learns goes to build/fuzz/corpus/, what breaks to
# build/fuzz/crash/ (and the run fails).  make check replays the seeds and
# regressions through the same targets built with gcc and ASan/UBSan.
FUZZ_CC	 = clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = http uphead scan classify config scrub usage reset_edit ws
# reset.c brings what a reset does: the usage file and shared memory.
FUZZ_LIBSRCS = src/http.c src/chunked.c src/uphead.c src/classify.c \
		 src/usagescan.c src/inspect.c src/wire.c src/jsontext.c \
		 $(wildcard src/config*.c) src/fileio.c src/log.c src/util.c \
		 src/scrub.c src/reset.c src/persist.c src/persist_in.c \
		 src/persist_out.c src/resname.c src/ws.c \
		 $(wildcard shm/*.c)
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) -g -O1 -Isrc -Ishm -Ibuild \
	   -Itests/fuzz $(PKG_CFLAGS) $(WSLAY_CFLAGS) \
	   -fsanitize=fuzzer,address,undefined \
	   -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_MAXLEN_http = 70000
FUZZ_MAXLEN_uphead = 70000
FUZZ_MAXLEN_scan = 32768
FUZZ_MAXLEN_classify = 8192
FUZZ_MAXLEN_config = 4096
FUZZ_MAXLEN_scrub = 4096
FUZZ_MAXLEN_usage = 16384
FUZZ_MAXLEN_reset_edit = 4096
FUZZ_MAXLEN_ws = 16384
FUZZ_RUNS = $(FUZZ_TARGETS:%=fuzz-%)
FUZZ_REPLAYS = $(FUZZ_TARGETS:%=build/test/replay_%)

.PHONY: fuzz fuzz-replay $(FUZZ_RUNS)

fuzz: $(FUZZ_RUNS)

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_LIBSRCS) \
	    $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_LIBSRCS) $(LDLIBS)

$(FUZZ_RUNS): fuzz-%: build/fuzz/fuzz_%
	@mkdir -p build/fuzz/corpus/$* build/fuzz/crash
	$< -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAXLEN_$*) \
	    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    -dict=tests/fuzz/$*.dict -artifact_prefix=build/fuzz/crash/$*- \
	    build/fuzz/corpus/$* tests/fuzz/corpus/$* \
	    $(wildcard tests/fuzz/regress/$*)

build/test/replay_%: tests/fuzz/replay.c tests/fuzz/fuzz_%.c \
	    tests/fuzz/fuzz.h $(FUZZ_LIBSRCS:%.c=build/test/%.o) $(HDRS)
	$(CC) $(ALL_CFLAGS) $(SAN) -Itests/fuzz -o $@ tests/fuzz/replay.c \
	    tests/fuzz/fuzz_$*.c $(FUZZ_LIBSRCS:%.c=build/test/%.o) $(LDLIBS)

fuzz-replay: $(FUZZ_REPLAYS)
	@for t in $(FUZZ_TARGETS); do \
	    build/test/replay_$$t tests/fuzz/corpus/$$t \
	        tests/fuzz/regress/$$t || exit 1; \
	done

clean:
	rm -rf build $(PROG)

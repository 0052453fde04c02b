# quota — PGXS build.  `make && make install`; tests: see README ("Testing").
EXTENSION    = quota
MODULE_big   = quota
OBJS = \
	src/bridge/entry.o \
	src/budget/rules.o \
	src/budget/window.o \
	src/budget/ledger.o \
	src/budget/escrow.o \
	src/budget/locks.o \
	src/storage/store.o \
	src/storage/table.o \
	src/storage/direct.o \
	src/storage/slots.o \
	src/storage/direct_slots.o \
	src/budget/settings.o \
	src/budget/alerts.o \
	src/storage/history.o \
	src/storage/links.o \
	src/storage/delegate.o \
	src/budget/tree.o \
	src/entry/functions.o
DATA         = $(wildcard sql/quota--*.sql)

PG_CONFIG   ?= pg_config
# PostgreSQL's headers as system headers: -Wall -Wextra then judge our code
# only (PG 15's headers trip -Wextra and -Wregister in C++ mode).
PG_CPPFLAGS  = -I$(CURDIR)/src -isystem $(shell $(PG_CONFIG) --includedir-server)
PG_CXXFLAGS  = -std=c++17 -Wall -Wextra $(QUOTA_WERROR)
EXTRA_CLEAN  = $(OBJS:.o=.o.d) $(OBJS:.o=.bc.d)
SHLIB_LINK  += -lstdc++

# pg_regress: sql/<name>.sql against expected/<name>.out
REGRESS      = setup accounts spending holds periods bad_input security settings table_changes slots history parents inspection hardening
REGRESS_OPTS = --inputdir=.
# isolation tester: test/specs/<name>.spec against test/expected/<name>.out
ISOLATION    = last_credit reserve_vs_charge commit_vs_release double_settle \
               expire_vs_commit readers_never_wait rollover_vs_charge idempotent_retry \
               slots_last_credit slots_rebalance_vs_commit slots_count_changed slots_multi_call slots_automatic slots_gather slots_not_installed \
               alerts_once history_rollover_vs_charge purge_vs_commit \
               parent_last_credit parent_and_child reparent_vs_commit cap_last_slot own_account_first \
               create_index_while_waiting create_index_while_waiting_accounts concurrently_while_spending \
               denials_never_wait
ISOLATION_OPTS = --inputdir=test --load-extension=quota

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The LLVM bitcode (Debian builds PostgreSQL with LLVM) is compiled by clang
# without PG_CXXFLAGS; give it the same language level and warnings.
COMPILE.cxx.bc += $(PG_CXXFLAGS)

# Header dependencies: each compile also writes the headers it read to
# <target>.d (one for the .o, one for LLVM's .bc), so a changed header
# rebuilds everything that includes it.
COMPILE.cc += -MMD -MP -MF $@.d
COMPILE.cxx.bc += -MMD -MP -MF $@.d
-include $(OBJS:.o=.o.d) $(OBJS:.o=.bc.d)

# Run pg_regress and the isolation tester as separate steps (installcheck
# would skip the isolation tests after a regression failure).
.PHONY: regresscheck isolationcheck
regresscheck:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)
isolationcheck:
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)

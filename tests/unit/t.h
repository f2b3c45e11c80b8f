/* t.h - tiny unit-test helpers: each check prints PASS/FAIL/SKIP lines that
 * tests/run.sh counts. */
#ifndef T_H
#define T_H
#include <stdio.h>
#include <string.h>
static int t_failed;
#define T_PASS(name) printf("PASS %s\n", name)
#define T_FAIL(name, ...) (printf("FAIL %s: ", name), printf(__VA_ARGS__), printf("\n"), t_failed++)
#define T_SKIP(name, why) printf("SKIP %s: %s\n", name, why)
#define T_OK(cond, name) do { if (cond) T_PASS(name); else T_FAIL(name, "%s (%s:%d)", #cond, __FILE__, __LINE__); } while (0)
#define T_DATA (getenv("DATA") ? getenv("DATA") : "../shared/data")
#endif

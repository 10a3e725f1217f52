/* Compiled by option_macros_compile.sh: with no CASE_* it must build
 * cleanly (every typed option macro on the member type it documents);
 * each CASE_* puts one macro on a member of the wrong type or with bad
 * bounds, and must fail to compile with the message the script expects. */
#include <outbox/plugin.h>

typedef struct conf {
    char *s;
    int64_t n;
    bool b;
    int e;
    obx_list l;
    obx_kvlist p;
    obx_range r;
    int32_t narrow;
    double real;
    char name[8];
    struct {
        int64_t inner;
    } sub;
} conf;

static const char *const values[] = {"a", "b", NULL};

const obx_option *rows_of(void);

static const obx_option rows[] = {
    OBX_OPT_STRING(conf, s, "s", OBX_REQUIRED_SECRET, "string"),
    OBX_OPT_INT(conf, n, "n", "1", -5, 5, "int"),
    OBX_OPT_INT_ANY(conf, n, "n_any", OBX_SECRET(NULL), "int, no bounds"),
    OBX_OPT_INT(conf, sub.inner, "inner", "1", 0, 1, "nested member"),
    OBX_OPT_BOOL(conf, b, "b", "true", "bool"),
    OBX_OPT_DURATION(conf, n, "d", "1s", 1, 60000, "duration"),
    OBX_OPT_DURATION_ANY(conf, n, "d_any", "1s", "duration"),
    OBX_OPT_SIZE(conf, n, "z", "1KiB", 1, 1 << 20, "size"),
    OBX_OPT_SIZE_ANY(conf, n, "z_any", "1KiB", "size"),
    OBX_OPT_ENUM(conf, e, "e", "a", values, "enum"),
    OBX_OPT_LIST(conf, l, "l", OBX_REQUIRED, "list"),
    OBX_OPT_RANGE(conf, r, "r", "1s..2s", 1, 10000, "range"),
    OBX_OPT_RANGE_ANY(conf, r, "r_any", "1s..2s", "range"),
    OBX_OPT_PREFIX(conf, p, "p", "prefix"),
    OBX_OPT_SECRET_PREFIX(conf, p, "q", "prefix"),
#if defined(CASE_INT_NARROW)
    OBX_OPT_INT(conf, narrow, "x", "1", 0, 5, "int32_t member"),
#elif defined(CASE_INT_DOUBLE)
    OBX_OPT_INT_ANY(conf, real, "x", "1", "double member, same width"),
#elif defined(CASE_BOOL_INT)
    OBX_OPT_BOOL(conf, e, "x", "true", "int member"),
#elif defined(CASE_ENUM_INT64)
    OBX_OPT_ENUM(conf, n, "x", "a", values, "int64_t member"),
#elif defined(CASE_STRING_ARRAY)
    OBX_OPT_STRING(conf, name, "x", "a", "char[8] member, pointer width"),
#elif defined(CASE_LIST_KVLIST)
    OBX_OPT_LIST(conf, p, "x", NULL, "obx_kvlist member, same width"),
#elif defined(CASE_DURATION_ZERO_BOUNDS)
    OBX_OPT_DURATION(conf, n, "x", "1s", 0, 0, "0..0: say _ANY"),
#elif defined(CASE_INT_INVERTED)
    OBX_OPT_INT(conf, n, "x", "1", 5, 1, "min > max"),
#endif
    OBX_OPTIONS_END,
};

/* The flags ride in the default's position: check they landed. */
_Static_assert(OBX_OPT_REQUIRED == 1 && OBX_OPT_SECRET == 2, "flag values");

const obx_option *rows_of(void)
{
    return rows;
}

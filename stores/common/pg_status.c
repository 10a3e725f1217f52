#include "pg_status.h"

#include <string.h>

obx_status osc_pg_status_of(const char *sqlstate)
{
    if (!sqlstate || strlen(sqlstate) != 5)
        return OBX_UNAVAILABLE; /* no server error: the connection failed */
    static const char *const classes[] = {"08", "28", "40", "53", "57", "58"};
    for (size_t i = 0; i < sizeof classes / sizeof *classes; i++)
        if (strncmp(sqlstate, classes[i], 2) == 0)
            return OBX_UNAVAILABLE;
    static const char *const codes[] = {"55P03", "55006", "25006", "3D000"};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        if (strcmp(sqlstate, codes[i]) == 0)
            return OBX_UNAVAILABLE;
    return OBX_FATAL;
}

/*
 * A stand-in libamd_smi.so for tests: the real amdsmi Python package loads it through ctypes exactly as it
 * loads ROCm's library (from $ROCM_PATH/lib). Each GPU draws a known power profile of wall-clock time, and
 * its energy accumulator is the exact integral of that profile in counts of the counter resolution, so
 * tests can check footprint against closed-form energy.
 *
 * The amdsmi package binds every function of the library when it is imported; tests/fakes/amdsmi_lib.py
 * compiles this file with weak stubs for the functions it does not model (they answer NOT_SUPPORTED).
 *
 * Configuration (read at amdsmi_init):
 *   FAKE_AMDSMI_T0          wall-clock second at which every accumulator is at its start (profile origin)
 *   FAKE_AMDSMI_GPUS        number of GPUs (default 1)
 *   FAKE_AMDSMI_POWER       comma list of per-GPU base power in W (default 100; last value repeats)
 *   FAKE_AMDSMI_SQUARE      "period_s,amplitude_w": add amplitude during the first half of every period
 *   FAKE_AMDSMI_RESOLUTION  counter resolution in µJ per count (default 15.3, as on MI200 and MI300)
 *   FAKE_AMDSMI_START       comma list of per-GPU accumulator values at T0 (default 0); the accumulator is
 *                           64-bit and wraps, so a start near 2^64 wraps during a test
 *   FAKE_AMDSMI_NO_ENERGY   "1": amdsmi_get_energy_count answers NOT_SUPPORTED
 *   FAKE_AMDSMI_NO_CURRENT  "1": current_socket_power is N/A, as on MI200 and older (average_socket_power,
 *                           the mean of the last second, is there); otherwise it is the instantaneous power
 *                           and average_socket_power is N/A, as on MI300
 *   FAKE_AMDSMI_MI250       "1": MI250X cards: GPUs 2k and 2k+1 are the two dies of card k (same board
 *                           serial); die 2k reports the whole card's power and energy (FAKE_AMDSMI_POWER
 *                           entry 2k), die 2k+1 reports 0 W and an accumulator that does not move
 *   FAKE_AMDSMI_HIP_IDS     comma list: the HIP index of each GPU in AMD SMI's order (default: the same)
 *   FAKE_AMDSMI_INIT_STATUS a status amdsmi_init answers (e.g. 34, AMDSMI_STATUS_DRIVER_NOT_LOADED)
 *   FAKE_AMDSMI_CALL_LOG    a file; every modelled call appends its name (to check what was called)
 * Power values are whole watts, as AMD SMI gives them. The Python twin of the maths is tests/fakes/profile.py.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef uint32_t amdsmi_status_t;
typedef void *amdsmi_handle;

#define AMDSMI_STATUS_SUCCESS 0
#define AMDSMI_STATUS_INVAL 1
#define AMDSMI_STATUS_NOT_SUPPORTED 2
#define AMDSMI_STATUS_NOT_INIT 32
#define AMDSMI_GPU_UUID_SIZE 38
#define NA_16 0xFFFF
#define MAX_GPUS 16

typedef struct {
    char market_name[256];
    uint32_t vendor_id;
    char vendor_name[256];
    uint32_t subvendor_id;
    uint64_t device_id;
    uint32_t rev_id;
    char asic_serial[256];
    uint32_t oam_id;
    uint32_t num_of_compute_units;
    uint64_t target_graphics_version;
    uint32_t subsystem_id;
    uint32_t reserved[21];
} amdsmi_asic_info_t;

typedef struct {
    char model_number[256];
    char product_serial[256];
    char fru_id[256];
    char product_name[256];
    char manufacturer_name[256];
    uint64_t reserved[64];
} amdsmi_board_info_t;

typedef struct {
    uint64_t socket_power;
    uint32_t current_socket_power;
    uint32_t average_socket_power;
    uint64_t gfx_voltage;
    uint64_t soc_voltage;
    uint64_t mem_voltage;
    uint32_t power_limit;
    uint64_t reserved[18];
} amdsmi_power_info_t;

typedef struct {
    uint64_t power_cap, default_power_cap, dpm_cap, min_power_cap, max_power_cap;
    uint64_t reserved[3];
} amdsmi_power_cap_info_t;

typedef struct {
    uint32_t drm_render, drm_card, hsa_id, hip_id;
    char hip_uuid[256];
} amdsmi_enumeration_info_t;

static int initialised = 0;
static int gpu_count = 1;
static double t0 = 0.0;
static double base_w[MAX_GPUS];
static double square_period = 0.0, square_amp = 0.0;
static float resolution_uj = 15.3f;
static uint64_t start_count[MAX_GPUS];
static int no_energy = 0, no_current = 0, mi250 = 0;
static uint32_t hip_id[MAX_GPUS];
static const char *call_log = NULL;

static void log_call(const char *name) {
    if (!call_log) return;
    FILE *f = fopen(call_log, "a");
    if (f) { fprintf(f, "%s\n", name); fclose(f); }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The second die of an MI250 card draws nothing of its own in AMD SMI's eyes: the first die reports both. */
static int silent(int i) { return mi250 && (i % 2 == 1); }

static double power_at(int i, double t) {
    if (silent(i)) return 0.0;
    double s = t - t0, p = base_w[i];
    if (square_period > 0 && s >= 0) {
        double phase = fmod(s, square_period);
        if (phase < square_period / 2) p += square_amp;
    }
    return p;
}

/* Exact integral of power_at(i, .) over [t0, t]. */
static double energy_j(int i, double t) {
    double s = t - t0;
    if (s <= 0 || silent(i)) return 0.0;
    double e = base_w[i] * s;
    if (square_period > 0) {
        double half = square_period / 2;
        double full = floor(s / square_period);
        double rest = s - full * square_period;
        e += square_amp * (full * half + (rest < half ? rest : half));
    }
    return e;
}

static int index_of(amdsmi_handle h) { return (int)((intptr_t)h - 1); }

static amdsmi_status_t check(amdsmi_handle h, int *i) {
    if (!initialised) return AMDSMI_STATUS_NOT_INIT;
    *i = index_of(h);
    if (*i < 0 || *i >= gpu_count) return AMDSMI_STATUS_INVAL;
    return AMDSMI_STATUS_SUCCESS;
}

static void parse_doubles(const char *s, double *out, int n, double dflt) {
    double last = dflt;
    for (int i = 0; i < n; i++) {
        if (s && *s) {
            last = strtod(s, (char **)&s);
            if (*s == ',') s++;
        }
        out[i] = last;
    }
}

static void parse_counts(const char *s, uint64_t *out, int n) {
    uint64_t last = 0;
    for (int i = 0; i < n; i++) {
        if (s && *s) {
            last = strtoull(s, (char **)&s, 10);
            if (*s == ',') s++;
        }
        out[i] = last;
    }
}

amdsmi_status_t amdsmi_init(uint64_t flags) {
    (void)flags;
    const char *v;
    call_log = getenv("FAKE_AMDSMI_CALL_LOG");
    log_call("amdsmi_init");
    if ((v = getenv("FAKE_AMDSMI_INIT_STATUS")) && atoi(v) != 0) return (amdsmi_status_t)atoi(v);
    if ((v = getenv("FAKE_AMDSMI_T0"))) t0 = strtod(v, NULL);
    if ((v = getenv("FAKE_AMDSMI_GPUS"))) gpu_count = atoi(v);
    if (gpu_count < 0) gpu_count = 0;
    if (gpu_count > MAX_GPUS) gpu_count = MAX_GPUS;
    parse_doubles(getenv("FAKE_AMDSMI_POWER"), base_w, MAX_GPUS, 100.0);
    if ((v = getenv("FAKE_AMDSMI_SQUARE"))) {
        square_period = strtod(v, (char **)&v);
        if (*v == ',') square_amp = strtod(v + 1, NULL);
    }
    if ((v = getenv("FAKE_AMDSMI_RESOLUTION"))) resolution_uj = strtof(v, NULL);
    parse_counts(getenv("FAKE_AMDSMI_START"), start_count, MAX_GPUS);
    no_energy = (v = getenv("FAKE_AMDSMI_NO_ENERGY")) && strcmp(v, "1") == 0;
    mi250 = (v = getenv("FAKE_AMDSMI_MI250")) && strcmp(v, "1") == 0;
    no_current = mi250 || ((v = getenv("FAKE_AMDSMI_NO_CURRENT")) && strcmp(v, "1") == 0);
    for (int i = 0; i < MAX_GPUS; i++) hip_id[i] = (uint32_t)i;
    if ((v = getenv("FAKE_AMDSMI_HIP_IDS"))) {
        for (int i = 0; i < MAX_GPUS && *v; i++) {
            hip_id[i] = (uint32_t)strtoul(v, (char **)&v, 10);
            if (*v != ',') break;
            v++;
        }
    }
    initialised = 1;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_shut_down(void) {
    log_call("amdsmi_shut_down");
    initialised = 0;
    return AMDSMI_STATUS_SUCCESS;
}

/* One socket per GPU, as AMD SMI gives discrete GPUs. */
amdsmi_status_t amdsmi_get_socket_handles(uint32_t *count, amdsmi_handle *sockets) {
    if (!initialised) return AMDSMI_STATUS_NOT_INIT;
    if (count == NULL) return AMDSMI_STATUS_INVAL;
    if (sockets != NULL) {
        uint32_t n = *count < (uint32_t)gpu_count ? *count : (uint32_t)gpu_count;
        for (uint32_t i = 0; i < n; i++) sockets[i] = (amdsmi_handle)(intptr_t)(i + 1);
    }
    *count = (uint32_t)gpu_count;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_processor_handles(amdsmi_handle socket, uint32_t *count, amdsmi_handle *handles) {
    if (!initialised) return AMDSMI_STATUS_NOT_INIT;
    int i = index_of(socket);
    if (count == NULL || i < 0 || i >= gpu_count) return AMDSMI_STATUS_INVAL;
    if (handles != NULL && *count >= 1) handles[0] = (amdsmi_handle)(intptr_t)(i + 1);
    *count = 1;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_processor_type(amdsmi_handle h, uint32_t *type) {
    int i; amdsmi_status_t r = check(h, &i);
    if (r) return r;
    *type = 1; /* AMDSMI_PROCESSOR_TYPE_AMD_GPU */
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_asic_info(amdsmi_handle h, amdsmi_asic_info_t *info) {
    log_call("amdsmi_get_gpu_asic_info");
    int i; amdsmi_status_t r = check(h, &i);
    if (r) return r;
    memset(info, 0, sizeof *info);
    snprintf(info->market_name, sizeof info->market_name, mi250 ? "AMD Instinct MI250X" : "AMD Instinct MI300X");
    snprintf(info->vendor_name, sizeof info->vendor_name, "Advanced Micro Devices Inc. [AMD/ATI]");
    info->vendor_id = 0x1002;
    info->device_id = mi250 ? 0x740c : 0x74a1;
    snprintf(info->asic_serial, sizeof info->asic_serial, "FA4E00000000%04X", i);
    info->num_of_compute_units = mi250 ? 110 : 304;
    info->target_graphics_version = mi250 ? 0x90a : 0x942;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_board_info(amdsmi_handle h, amdsmi_board_info_t *info) {
    int i; amdsmi_status_t r = check(h, &i);
    if (r) return r;
    memset(info, 0, sizeof *info);
    /* the two dies of an MI250 sit on one board: one serial */
    snprintf(info->product_serial, sizeof info->product_serial, "PCB%06d", mi250 ? i / 2 : i);
    snprintf(info->product_name, sizeof info->product_name, mi250 ? "Aldebaran/MI200 [Instinct MI250X]" : "MI300X");
    snprintf(info->manufacturer_name, sizeof info->manufacturer_name, "AMD");
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_device_uuid(amdsmi_handle h, uint32_t *len, char *uuid) {
    int i; amdsmi_status_t r = check(h, &i);
    if (r) return r;
    if (len == NULL || uuid == NULL || *len < AMDSMI_GPU_UUID_SIZE) return AMDSMI_STATUS_INVAL;
    snprintf(uuid, *len, "%02xff74a1-0000-1000-80fa-4e000000%04x", i, i);
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_enumeration_info(amdsmi_handle h, amdsmi_enumeration_info_t *info) {
    int i; amdsmi_status_t r = check(h, &i);
    if (r) return r;
    memset(info, 0, sizeof *info);
    info->drm_card = (uint32_t)i;
    info->drm_render = 128 + (uint32_t)i;
    info->hsa_id = (uint32_t)i + 1;
    info->hip_id = hip_id[i];
    snprintf(info->hip_uuid, sizeof info->hip_uuid, "GPU-fa4e00000000%04x", i);
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_energy_count(amdsmi_handle h, uint64_t *accumulator, float *resolution,
                                        uint64_t *timestamp) {
    log_call("amdsmi_get_energy_count");
    int i; amdsmi_status_t r = check(h, &i);
    if (r) return r;
    if (no_energy) return AMDSMI_STATUS_NOT_SUPPORTED;
    double t = now();
    /* whole counts since T0, on top of the start value; unsigned arithmetic wraps at 2^64 as the counter does */
    uint64_t counts = (uint64_t)floor(energy_j(i, t) * 1e6 / (double)resolution_uj);
    *accumulator = start_count[i] + counts;
    *resolution = resolution_uj;
    *timestamp = (uint64_t)(t * 1e9);
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_power_info(amdsmi_handle h, amdsmi_power_info_t *info) {
    log_call("amdsmi_get_power_info");
    int i; amdsmi_status_t r = check(h, &i);
    if (r) return r;
    memset(info, 0, sizeof *info);
    double t = now();
    uint32_t current = (uint32_t)llround(power_at(i, t));
    uint32_t average = (uint32_t)llround(energy_j(i, t) - energy_j(i, t - 1.0));
    info->current_socket_power = no_current ? NA_16 : current;
    info->average_socket_power = no_current ? average : NA_16;
    info->socket_power = no_current ? average : current;
    info->gfx_voltage = info->soc_voltage = info->mem_voltage = NA_16;
    info->power_limit = mi250 ? 560 : 750;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_power_cap_info(amdsmi_handle h, uint32_t sensor, amdsmi_power_cap_info_t *info) {
    (void)sensor;
    int i; amdsmi_status_t r = check(h, &i);
    if (r) return r;
    memset(info, 0, sizeof *info);
    info->power_cap = info->default_power_cap = (mi250 ? 560ULL : 750ULL) * 1000000ULL; /* µW */
    info->min_power_cap = 100ULL * 1000000ULL;
    info->max_power_cap = info->power_cap;
    return AMDSMI_STATUS_SUCCESS;
}

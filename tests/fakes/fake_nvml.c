/*
 * A stand-in libnvidia-ml.so.1 for tests: the real pynvml loads it through ctypes exactly as it loads the
 * driver's library. Each GPU draws a known power profile of wall-clock time, and its energy counter is the
 * exact integral of that profile, so tests can check footprint against closed-form energy.
 *
 * Configuration (read at nvmlInit):
 *   FAKE_NVML_T0         wall-clock second at which every counter is 0 (required; profile time origin)
 *   FAKE_NVML_GPUS       number of GPUs (default 1)
 *   FAKE_NVML_POWER      comma list of per-GPU base power in W (default 100; last value repeats)
 *   FAKE_NVML_SQUARE     "period_s,amplitude_w": add amplitude during the first half of every period
 *   FAKE_NVML_NO_ENERGY  "1": nvmlDeviceGetTotalEnergyConsumption answers NOT_SUPPORTED (pre-Volta GPUs)
 *   FAKE_NVML_NO_FIELDS  "1": nvmlDeviceGetFieldValues answers NOT_SUPPORTED
 *   FAKE_NVML_MIG        comma list of GPU indices in MIG mode; each has FAKE_NVML_MIG_INSTANCES (default 2) MIG
 *                        devices, MIG-0000fa4e-0000-<gpu, 4 digits>-0000-<instance, 12 digits>, that answer
 *                        nvmlDeviceGetHandleByUUID, nvmlDeviceGetMigDeviceHandleByIndex, nvmlDeviceGetUUID and
 *                        nvmlDeviceGetDeviceHandleFromMigDeviceHandle (and, like the driver's, no energy)
 *   FAKE_NVML_PCI_BUS    comma list of per-GPU PCI bus numbers (hex; default 1, 2, ...): nvmlDeviceGetPciInfo_v3
 *                        answers busId "00000000:<bus>:00.0", so NVML's order need not be PCI order
 *   FAKE_NVML_PROCS_FILE a file of "gpu_index pid" lines: nvmlDeviceGetComputeRunningProcesses lists those pids
 *                        (that are alive) on those GPUs, as the driver lists the processes holding a context
 *   FAKE_NVML_LOST       "index,seconds_after_T0": that GPU answers GPU_IS_LOST from then on; "index,@file":
 *                        the same, with seconds_after_T0 read from that file once it exists, so a test can choose
 *                        the instant once the profiler is reading (a time fixed at launch can pass before then)
 *   FAKE_NVML_CALL_LOG   a file; every call appends its name (to check what was called)
 *   FAKE_NVML_LIMITS     "min,max,default" power limit constraints and default limit in W (default 200,700,700)
 *   FAKE_NVML_ALLOW_SET  "1": nvmlDeviceSetPowerManagementLimit is allowed (models root / CAP_SYS_ADMIN);
 *                        otherwise it answers NO_PERMISSION, as the driver does for other users
 *   FAKE_NVML_STATE      a directory: each GPU's limit (and the energy counter at its last change) lives in
 *                        the file gpu<i> there, so every process sees a limit another one set, as limits are
 *                        global to a real GPU. Unset: limits are per process.
 *   FAKE_NVML_TIME_FILE  a file holding the current time (epoch seconds, text): time is what the test writes
 *                        there instead of the wall clock, so a stand-in workload can drive it
 * Power limits: a GPU draws min(profile power, its limit); the energy counter is the exact integral of that,
 * piecewise over the limit changes (the state keeps the counter at the last change).
 *   FAKE_NVML_NAME       comma list of per-GPU names (default "Fake NVIDIA H100 80GB HBM3"; last one repeats)
 * nvmlDeviceGetPowerUsage answers the mean power of the last second (as Ampere and newer do);
 * NVML_FI_DEV_POWER_INSTANT the instantaneous power.
 * The Python twin of the maths is tests/fakes/profile.py.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int nvmlReturn_t;
typedef void *nvmlDevice_t;

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NO_PERMISSION 4
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_GPU_IS_LOST 15
#define NVML_ERROR_UNKNOWN 999
#define NVML_FI_DEV_POWER_INSTANT 186
#define MAX_GPUS 16

typedef union {
    double dVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    signed long long sllVal;
    signed int siVal;
    unsigned short usVal;
} nvmlValue_t;

typedef struct {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    int valueType;
    nvmlReturn_t nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;

static int initialised = 0;
static int gpu_count = 1;
static double t0 = 0.0;
static double base_w[MAX_GPUS];
static double square_period = 0.0, square_amp = 0.0;
static int no_energy = 0, no_fields = 0;
static int mig[MAX_GPUS];
static int mig_instances = 2;
static unsigned int pci_bus[MAX_GPUS];
static const char *procs_file = NULL;
#define MIG_BASE 0x10000  /* MIG device handles: MIG_BASE + gpu * 64 + instance + 1 */
static int lost_index = -1;
static double lost_after = 0.0;
static const char *lost_file = NULL;  /* "@file": lost_after is in it once it exists */
static const char *call_log = NULL;
static unsigned int limit_min_mw = 200000, limit_max_mw = 700000, limit_default_mw = 700000;
static int allow_set = 0;
static const char *state_dir = NULL, *time_file = NULL;
/* per process when there is no FAKE_NVML_STATE: limit (mW), time of its last change, counter then (J) */
static unsigned int mem_limit[MAX_GPUS];
static double mem_since[MAX_GPUS], mem_energy[MAX_GPUS];

static void log_call(const char *name) {
    if (!call_log) return;
    FILE *f = fopen(call_log, "a");
    if (f) { fprintf(f, "%s\n", name); fclose(f); }
}

static double now(void) {
    if (time_file) {
        FILE *f = fopen(time_file, "r");
        double t = 0.0;
        if (f) { if (fscanf(f, "%lf", &t) != 1) t = 0.0; fclose(f); }
        return t;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double power_at(int i, double t) {
    double s = t - t0, p = base_w[i];
    if (square_period > 0 && s >= 0) {
        double phase = fmod(s, square_period);
        if (phase < square_period / 2) p += square_amp;
    }
    return p;
}

/* Exact integral over [t0, t] of the profile with its base and high levels capped at cap_w. */
static double profile_energy_j(int i, double t, double cap_w) {
    double s = t - t0;
    if (s <= 0) return 0.0;
    double lo = base_w[i] < cap_w ? base_w[i] : cap_w;
    double e = lo * s;
    if (square_period > 0) {
        double hi = base_w[i] + square_amp < cap_w ? base_w[i] + square_amp : cap_w;
        double half = square_period / 2;
        double full = floor(s / square_period);
        double rest = s - full * square_period;
        e += (hi - lo) * (full * half + (rest < half ? rest : half));
    }
    return e;
}

/* The GPU's limit (mW), when it was last changed and its counter then: from FAKE_NVML_STATE/gpu<i>, else
 * this process's memory; never changed: the default limit since t0. */
static void limit_state(int i, unsigned int *mw, double *since, double *energy) {
    *mw = mem_limit[i] ? mem_limit[i] : limit_default_mw;
    *since = mem_limit[i] ? mem_since[i] : t0;
    *energy = mem_limit[i] ? mem_energy[i] : 0.0;
    if (!state_dir) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/gpu%d", state_dir, i);
    FILE *f = fopen(path, "r");
    if (!f) return;
    unsigned int m; double a, e;
    if (fscanf(f, "%u %lf %lf", &m, &a, &e) == 3) { *mw = m; *since = a; *energy = e; }
    fclose(f);
}

/* Exact integral of min(power_at(i, .), limit) over [t0, t], piecewise over the limit's changes. (For t
 * before the last change, the current limit is assumed: only the 1 s mean of nvmlDeviceGetPowerUsage asks.) */
static double energy_j(int i, double t) {
    unsigned int mw; double since, e;
    limit_state(i, &mw, &since, &e);
    double cap = mw / 1000.0;
    return e + profile_energy_j(i, t, cap) - profile_energy_j(i, since, cap);
}

static double power_at_limited(int i, double t) {
    unsigned int mw; double since, e;
    limit_state(i, &mw, &since, &e);
    double p = power_at(i, t);
    return p < mw / 1000.0 ? p : mw / 1000.0;
}

static int index_of(nvmlDevice_t d) { return (int)((intptr_t)d - 1); }

static nvmlReturn_t check(nvmlDevice_t d, int *i) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    *i = index_of(d);
    if (*i < 0 || *i >= gpu_count) return NVML_ERROR_INVALID_ARGUMENT;
    if (*i == lost_index && lost_file) {
        FILE *f = fopen(lost_file, "r");
        if (f) {
            if (fscanf(f, "%lf", &lost_after) == 1) lost_file = NULL;
            fclose(f);
        }
    }
    if (*i == lost_index && !lost_file && now() - t0 >= lost_after) return NVML_ERROR_GPU_IS_LOST;
    return NVML_SUCCESS;
}

static void parse_list(const char *s, double *out, int n, double dflt) {
    double last = dflt;
    for (int i = 0; i < n; i++) {
        if (s && *s) {
            last = strtod(s, (char **)&s);
            if (*s == ',') s++;
        }
        out[i] = last;
    }
}

/* Reference counted, like the driver's: each nvmlInit needs its nvmlShutdown, so one library in a process
 * (footprint's tuner) shutting NVML down leaves another (the workload's pynvml) working. */
nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    const char *v;
    call_log = getenv("FAKE_NVML_CALL_LOG");
    log_call("nvmlInitWithFlags");
    if (initialised) { initialised++; return NVML_SUCCESS; }
    if ((v = getenv("FAKE_NVML_T0"))) t0 = strtod(v, NULL);
    if ((v = getenv("FAKE_NVML_GPUS"))) gpu_count = atoi(v);
    if (gpu_count < 0) gpu_count = 0;
    if (gpu_count > MAX_GPUS) gpu_count = MAX_GPUS;
    parse_list(getenv("FAKE_NVML_POWER"), base_w, MAX_GPUS, 100.0);
    if ((v = getenv("FAKE_NVML_SQUARE"))) {
        square_period = strtod(v, (char **)&v);
        if (*v == ',') square_amp = strtod(v + 1, NULL);
    }
    no_energy = (v = getenv("FAKE_NVML_NO_ENERGY")) && strcmp(v, "1") == 0;
    no_fields = (v = getenv("FAKE_NVML_NO_FIELDS")) && strcmp(v, "1") == 0;
    memset(mig, 0, sizeof mig);
    if ((v = getenv("FAKE_NVML_MIG"))) {
        while (*v) {
            int i = (int)strtol(v, (char **)&v, 10);
            if (i >= 0 && i < MAX_GPUS) mig[i] = 1;
            if (*v != ',') break;
            v++;
        }
    }
    if ((v = getenv("FAKE_NVML_MIG_INSTANCES"))) mig_instances = atoi(v);
    if (mig_instances < 0) mig_instances = 0;
    if (mig_instances > 7) mig_instances = 7;
    v = getenv("FAKE_NVML_PCI_BUS");
    for (int i = 0; i < MAX_GPUS; i++) {
        pci_bus[i] = (unsigned int)(i + 1);
        if (v && *v) {
            pci_bus[i] = (unsigned int)strtoul(v, (char **)&v, 16);
            if (*v == ',') v++;
        }
    }
    procs_file = getenv("FAKE_NVML_PROCS_FILE");
    if (procs_file && !*procs_file) procs_file = NULL;
    if ((v = getenv("FAKE_NVML_LOST"))) {
        lost_index = (int)strtol(v, (char **)&v, 10);
        if (*v == ',' && v[1] == '@') lost_file = v + 2;
        else if (*v == ',') lost_after = strtod(v + 1, NULL);
    }
    if ((v = getenv("FAKE_NVML_LIMITS"))) {
        double lo = strtod(v, (char **)&v), hi = 0, dflt = 0;
        if (*v == ',') hi = strtod(v + 1, (char **)&v);
        if (*v == ',') dflt = strtod(v + 1, (char **)&v);
        limit_min_mw = (unsigned int)llround(lo * 1000);
        limit_max_mw = (unsigned int)llround(hi * 1000);
        limit_default_mw = dflt > 0 ? (unsigned int)llround(dflt * 1000) : limit_max_mw;
    }
    allow_set = (v = getenv("FAKE_NVML_ALLOW_SET")) && strcmp(v, "1") == 0;
    state_dir = getenv("FAKE_NVML_STATE");
    if (state_dir && !*state_dir) state_dir = NULL;
    time_file = getenv("FAKE_NVML_TIME_FILE");
    if (time_file && !*time_file) time_file = NULL;
    initialised = 1;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    log_call("nvmlShutdown");
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    initialised--;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *buf, unsigned int len) {
    snprintf(buf, len, "999.99-fake");
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    log_call("nvmlDeviceGetCount_v2");
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    *count = (unsigned int)gpu_count;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *dev) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if ((int)index >= gpu_count) return NVML_ERROR_INVALID_ARGUMENT;
    *dev = (nvmlDevice_t)(intptr_t)(index + 1);
    return NVML_SUCCESS;
}

static void uuid_of(int i, char *buf, unsigned int len) {
    snprintf(buf, len, "GPU-0000fa4e-0000-0000-0000-%012d", i);
}

static void mig_uuid_of(int gpu, int k, char *buf, unsigned int len) {
    snprintf(buf, len, "MIG-0000fa4e-0000-%04d-0000-%012d", gpu, k);
}

/* A MIG device handle's GPU and instance; 0 when it is not one. */
static int mig_of(nvmlDevice_t d, int *gpu, int *k) {
    intptr_t h = (intptr_t)d - MIG_BASE - 1;
    if (h < 0) return 0;
    *gpu = (int)(h / 64); *k = (int)(h % 64);
    return *gpu < gpu_count && mig[*gpu] && *k < mig_instances;
}

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *dev) {
    char buf[96];
    log_call("nvmlDeviceGetHandleByUUID");
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    for (int i = 0; i < gpu_count; i++) {
        uuid_of(i, buf, sizeof buf);
        if (strcmp(buf, uuid) == 0) { *dev = (nvmlDevice_t)(intptr_t)(i + 1); return NVML_SUCCESS; }
        for (int k = 0; mig[i] && k < mig_instances; k++) {
            mig_uuid_of(i, k, buf, sizeof buf);
            if (strcmp(buf, uuid) == 0) { *dev = (nvmlDevice_t)(intptr_t)(MIG_BASE + i * 64 + k + 1); return NVML_SUCCESS; }
        }
    }
    return 6; /* NVML_ERROR_NOT_FOUND */
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t d, unsigned int *count) {
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    *count = mig[i] ? 7 : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t d, unsigned int k, nvmlDevice_t *out) {
    log_call("nvmlDeviceGetMigDeviceHandleByIndex");
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    if (!mig[i]) return NVML_ERROR_INVALID_ARGUMENT;
    if ((int)k >= mig_instances) return 6; /* NVML_ERROR_NOT_FOUND */
    *out = (nvmlDevice_t)(intptr_t)(MIG_BASE + i * 64 + (int)k + 1);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t m, nvmlDevice_t *out) {
    log_call("nvmlDeviceGetDeviceHandleFromMigDeviceHandle");
    int g, k;
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if (!mig_of(m, &g, &k)) return NVML_ERROR_INVALID_ARGUMENT;
    *out = (nvmlDevice_t)(intptr_t)(g + 1);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t d, unsigned int *is_mig) {
    int g, k;
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    *is_mig = (unsigned int)mig_of(d, &g, &k);
    return NVML_SUCCESS;
}

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *p) {
    log_call("nvmlDeviceGetPciInfo_v3");
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    memset(p, 0, sizeof *p);
    p->bus = pci_bus[i];
    p->pciDeviceId = 0x233010de;
    snprintf(p->busId, sizeof p->busId, "00000000:%02X:00.0", pci_bus[i]);
    snprintf(p->busIdLegacy, sizeof p->busIdLegacy, "0000:%02X:00.0", pci_bus[i]);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *buf, unsigned int len) {
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    const char *names = getenv("FAKE_NVML_NAME"), *start = names, *end;
    if (!names || !*names) { snprintf(buf, len, "Fake NVIDIA H100 80GB HBM3"); return NVML_SUCCESS; }
    for (int k = 0; k < i && strchr(start, ','); k++) start = strchr(start, ',') + 1;  /* the last one repeats */
    end = strchr(start, ',');
    snprintf(buf, len, "%.*s", (int)(end ? end - start : (long)strlen(start)), start);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *buf, unsigned int len) {
    int g, k;
    if (initialised && mig_of(d, &g, &k)) { mig_uuid_of(g, k, buf, len); return NVML_SUCCESS; }
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    uuid_of(i, buf, len);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int *mw) {
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    double since, e;
    limit_state(i, mw, &since, &e);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t d, unsigned int *mw) {
    log_call("nvmlDeviceGetPowerManagementLimit");
    return nvmlDeviceGetEnforcedPowerLimit(d, mw);
}

/* Like the driver: root only, and within the constraints. The counter so far is kept with the new limit. */
nvmlReturn_t nvmlDeviceSetPowerManagementLimit(nvmlDevice_t d, unsigned int mw) {
    log_call("nvmlDeviceSetPowerManagementLimit");
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    if (!allow_set) return NVML_ERROR_NO_PERMISSION;
    if (mw < limit_min_mw || mw > limit_max_mw) return NVML_ERROR_INVALID_ARGUMENT;
    double t = now(), e = energy_j(i, t);
    mem_limit[i] = mw; mem_since[i] = t; mem_energy[i] = e;
    if (state_dir) {
        char path[4096], tmp[4200];
        snprintf(path, sizeof path, "%s/gpu%d", state_dir, i);
        snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
        FILE *f = fopen(tmp, "w");
        if (!f) return NVML_ERROR_UNKNOWN;
        fprintf(f, "%u %.9f %.9f\n", mw, t, e);
        fclose(f);
        if (rename(tmp, path) != 0) return NVML_ERROR_UNKNOWN;  /* atomic: a reader sees old or new */
    }
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    *current = *pending = (unsigned int)mig[i];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
    log_call("nvmlDeviceGetTotalEnergyConsumption");
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    if (no_energy) return NVML_ERROR_NOT_SUPPORTED;
    *mj = (unsigned long long)llround(energy_j(i, now()) * 1000.0);
    return NVML_SUCCESS;
}

/* Like Ampere and Hopper GPUs: the mean power over the last second, not an instantaneous value. */
nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) {
    log_call("nvmlDeviceGetPowerUsage");
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    double t = now();
    *mw = (unsigned int)llround((energy_j(i, t) - energy_j(i, t - 1.0)) * 1000.0);
    return NVML_SUCCESS;
}

/* What other tools ask for at start-up (so peers in the benchmarks see a whole GPU too). */
nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t d, unsigned int *arch) {
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    *arch = 9; /* NVML_DEVICE_ARCH_HOPPER */
    return NVML_SUCCESS;
}

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    m->total = 80ULL << 30; m->used = 1ULL << 30; m->free = m->total - m->used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int *temp) {
    (void)sensor;
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    *temp = 50;
    return NVML_SUCCESS;
}

typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    u->gpu = 50; u->memory = 10;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t d, int *mode) {
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    *mode = 0;
    return NVML_SUCCESS;
}

static nvmlReturn_t no_processes(nvmlDevice_t d, unsigned int *count, void *infos) {
    (void)infos;
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    *count = 0;
    return NVML_SUCCESS;
}

typedef struct { unsigned int pid; unsigned long long usedGpuMemory; unsigned int gpuInstanceId, computeInstanceId; }
    nvmlProcessInfo_t;

/* The live pids FAKE_NVML_PROCS_FILE puts on this GPU, with the driver's two-call protocol: a too small
 * array gets INSUFFICIENT_SIZE and the count. */
static nvmlReturn_t compute_processes(nvmlDevice_t d, unsigned int *count, nvmlProcessInfo_t *infos) {
    log_call("nvmlDeviceGetComputeRunningProcesses_v3");
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    unsigned int pids[256], n = 0;
    FILE *f = procs_file ? fopen(procs_file, "r") : NULL;
    if (f) {
        int gpu; unsigned int pid;
        while (n < 256 && fscanf(f, "%d %u", &gpu, &pid) == 2) {
            char path[64];
            snprintf(path, sizeof path, "/proc/%u", pid);
            if (gpu == i && access(path, F_OK) == 0) pids[n++] = pid;
        }
        fclose(f);
    }
    if (n == 0) { *count = 0; return NVML_SUCCESS; }
    if (!infos || *count < n) { *count = n; return NVML_ERROR_INSUFFICIENT_SIZE; }
    for (unsigned int k = 0; k < n; k++) {
        infos[k].pid = pids[k]; infos[k].usedGpuMemory = 1ULL << 30;
        infos[k].gpuInstanceId = infos[k].computeInstanceId = 0xFFFFFFFF;
    }
    *count = n;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *c, void *p) {
    return compute_processes(d, c, (nvmlProcessInfo_t *)p);
}
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t d, unsigned int *c, void *p) { return no_processes(d, c, p); }
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned int *c, void *p) { return no_processes(d, c, p); }
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t d, unsigned int *c, void *p) { return no_processes(d, c, p); }

nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t d, unsigned int *mw) {
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    *mw = limit_default_mw;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t d, unsigned int *lo, unsigned int *hi) {
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    *lo = limit_min_mw; *hi = limit_max_mw;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t d, int count, nvmlFieldValue_t *values) {
    log_call("nvmlDeviceGetFieldValues");
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    if (no_fields) return NVML_ERROR_NOT_SUPPORTED;
    for (int k = 0; k < count; k++) {
        double t = now();
        values[k].timestamp = (long long)(t * 1e6);
        values[k].latencyUsec = 0;
        if (values[k].fieldId == NVML_FI_DEV_POWER_INSTANT) {
            values[k].valueType = 1; /* unsigned int */
            values[k].nvmlReturn = NVML_SUCCESS;
            values[k].value.uiVal = (unsigned int)llround(power_at_limited(i, t) * 1000.0);
        } else {
            values[k].nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        }
    }
    return NVML_SUCCESS;
}

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
 *   FAKE_NVML_MIG        comma list of GPU indices in MIG mode
 *   FAKE_NVML_LOST       "index,seconds_after_T0": that GPU answers GPU_IS_LOST from then on
 *   FAKE_NVML_CALL_LOG   a file; every call appends its name (to check what was called)
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

typedef int nvmlReturn_t;
typedef void *nvmlDevice_t;

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_GPU_IS_LOST 15
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
static int lost_index = -1;
static double lost_after = 0.0;
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

static double power_at(int i, double t) {
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
    if (s <= 0) return 0.0;
    double e = base_w[i] * s;
    if (square_period > 0) {
        double half = square_period / 2;
        double full = floor(s / square_period);
        double rest = s - full * square_period;
        e += square_amp * (full * half + (rest < half ? rest : half));
    }
    return e;
}

static int index_of(nvmlDevice_t d) { return (int)((intptr_t)d - 1); }

static nvmlReturn_t check(nvmlDevice_t d, int *i) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    *i = index_of(d);
    if (*i < 0 || *i >= gpu_count) return NVML_ERROR_INVALID_ARGUMENT;
    if (*i == lost_index && now() - t0 >= lost_after) return NVML_ERROR_GPU_IS_LOST;
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

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    const char *v;
    call_log = getenv("FAKE_NVML_CALL_LOG");
    log_call("nvmlInitWithFlags");
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
    if ((v = getenv("FAKE_NVML_LOST"))) {
        lost_index = (int)strtol(v, (char **)&v, 10);
        if (*v == ',') lost_after = strtod(v + 1, NULL);
    }
    initialised = 1;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    log_call("nvmlShutdown");
    initialised = 0;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
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

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *dev) {
    char buf[96];
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    for (int i = 0; i < gpu_count; i++) {
        uuid_of(i, buf, sizeof buf);
        if (strcmp(buf, uuid) == 0) { *dev = (nvmlDevice_t)(intptr_t)(i + 1); return NVML_SUCCESS; }
    }
    return NVML_ERROR_INVALID_ARGUMENT;
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
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    uuid_of(i, buf, len);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int *mw) {
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    *mw = 700000;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t d, unsigned int *mw) {
    return nvmlDeviceGetEnforcedPowerLimit(d, mw);
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

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *c, void *p) { return no_processes(d, c, p); }
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t d, unsigned int *c, void *p) { return no_processes(d, c, p); }
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t d, unsigned int *c, void *p) { return no_processes(d, c, p); }
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t d, unsigned int *c, void *p) { return no_processes(d, c, p); }

nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t d, unsigned int *mw) {
    return nvmlDeviceGetEnforcedPowerLimit(d, mw);
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t d, unsigned int *lo, unsigned int *hi) {
    int i; nvmlReturn_t r = check(d, &i);
    if (r) return r;
    *lo = 200000; *hi = 700000;
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
            values[k].value.uiVal = (unsigned int)llround(power_at(i, t) * 1000.0);
        } else {
            values[k].nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        }
    }
    return NVML_SUCCESS;
}

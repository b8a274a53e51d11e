/*
 * WEFT_IB_HCA: parsing, matching, and the choice of the nearest allowed device ports.
 *
 * The syntax is NCCL's (NCCL_IB_HCA): a comma-separated list of device names. Each entry is a name
 * prefix ("mlx5" matches mlx5_0 and mlx5_12) unless the list starts with '=', which makes every
 * entry an exact name. A leading '^' excludes the listed devices instead of selecting them, and
 * "^=" excludes exact names. An entry may end in ":port" to name one port ("mlx5_0:1"). Without a
 * port, an entry covers every port of the device.
 *
 * Nothing here calls hwloc or reads the system: the caller passes the devices it found, so the
 * parser, the matcher and the choice are unit-tested on made-up devices.
 */
#ifndef WF_NIC_SELECT_H
#define WF_NIC_SELECT_H

#include <stddef.h>

#define WF_NIC_NAME_MAX 32     /* maximum bytes of a device name, NUL included */
#define WF_NIC_ENTRIES_MAX 32  /* entries in one WEFT_IB_HCA value */
#define WF_NIC_PORT_MAX 255    /* InfiniBand port numbers are 8-bit and start at 1 */

typedef struct {
    char name[WF_NIC_NAME_MAX]; /* prefix, or exact name when the list starts with '=' */
    int port;                   /* 1 to WF_NIC_PORT_MAX, or 0 for every port */
} wf_nic_entry_t;

/* A parsed WEFT_IB_HCA value. With no entries it allows every device. */
typedef struct {
    int exclude; /* leading '^': the entries name devices that must not be used */
    int exact;   /* leading '=' (after any '^'): entries are whole names, not prefixes */
    int nentries;
    wf_nic_entry_t entries[WF_NIC_ENTRIES_MAX];
} wf_nic_spec_t;

/*
 * Parse a WEFT_IB_HCA value. An empty text gives a spec that allows every device. Returns 0, or -1
 * with the reason in err (which entry, what is wrong, how to write it); *spec is then empty.
 */
int wf_nic_spec_parse(const char *text, wf_nic_spec_t *spec, char *err, size_t errlen);

/* Return the index of the first entry that names this port of the device, or -1 if none does. */
int wf_nic_spec_find(const wf_nic_spec_t *spec, const char *name, int port);

/* Return 1 when spec allows this port of the device, 0 when it does not. */
int wf_nic_spec_allows(const wf_nic_spec_t *spec, const char *name, int port);

typedef enum {
    WF_PORT_STATE_UNKNOWN = 0, /* not reported, treated as usable */
    WF_PORT_STATE_ACTIVE,
    WF_PORT_STATE_DOWN         /* any state other than active: down, init, armed */
} wf_port_state_t;

#define WF_NIC_PORTS_MAX 8 /* ports recorded per device; HCAs have one or two */

/* One device, in the form wf_nic_choose takes. */
typedef struct {
    const char *name;
    int distance; /* from the calling process: smaller is nearer, only the order matters */
    int nports;   /* 0 when the ports are not known: taken as port 1 in an unknown state */
    unsigned char port_state[WF_NIC_PORTS_MAX]; /* wf_port_state_t of port p at index p - 1 */
} wf_nic_device_t;

typedef struct {
    int device; /* index into the devices passed to wf_nic_choose */
    int port;
} wf_nic_choice_t;

/* Counts that explain an empty or shortened choice. */
typedef struct {
    int allowed;  /* device ports the spec allows, whatever their state */
    int usable;   /* of those, ports that are active or in an unknown state */
    int nearest;  /* usable ports at the nearest distance among them */
    int distance; /* that distance; meaningless when usable is 0 */
} wf_nic_outcome_t;

/*
 * Choose the usable ports that spec allows at the smallest distance, at most max_chosen of them,
 * in the order of the spec's entries (for a list of names), then of devices, then of ports.
 * Ports beyond max_chosen at the same distance are counted in outcome->nearest but not chosen.
 * Returns the number chosen; 0 is not an error here, the caller decides what it means.
 */
int wf_nic_choose(const wf_nic_spec_t *spec, const wf_nic_device_t *devices, int ndevices,
                  wf_nic_choice_t *chosen, int max_chosen, wf_nic_outcome_t *outcome);

/*
 * Write the devices and the state of their ports for a message, e.g.
 * "mlx5_0 (port 1 active, port 2 down), rxe0 (port 1)", or "none" when there are no devices.
 */
void wf_nic_describe_devices(const wf_nic_device_t *devices, int ndevices, char *out, size_t outlen);

#endif /* WF_NIC_SELECT_H */

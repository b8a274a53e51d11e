/*
 * Completion handling for the libfabric transport: one CQ in FI_CQ_FORMAT_DATA for sends,
 * receives, local write completions and the remote CQ data of writes into local regions.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_errno.h>

#include "ofi.h"

int wf_ofi_errno(int fi_error)
{
    /* libfabric reuses errno values below FI_ERRNO_OFFSET; map its own codes to the nearest errno. */
    if (fi_error > 0 && fi_error < FI_ERRNO_OFFSET)
        return -fi_error;
    switch (fi_error) {
    case FI_ETRUNC:
        return -EMSGSIZE;
    case FI_ENOKEY:
    case FI_EBADFLAGS:
        return -EINVAL;
    case FI_EOVERRUN:
        return -EOVERFLOW;
    default:
        return -EIO;
    }
}

const char *wf_ofi_op_name(wf_ofi_op_kind_t kind)
{
    switch (kind) {
    case WF_OFI_OP_SEND:
        return "tagged send";
    case WF_OFI_OP_RECV:
        return "tagged receive";
    case WF_OFI_OP_WRITE:
        return "RDMA write";
    case WF_OFI_OP_READ:
        return "RDMA read";
    }
    return "operation";
}

static const char *provider_of(const struct wf_transport *t)
{
    return t->info->fabric_attr->prov_name;
}

static wf_ofi_op_t *op_of_context(void *context)
{
    return (wf_ofi_op_t *)((char *)context - offsetof(wf_ofi_op_t, context));
}

static void complete_op(struct wf_transport *t, wf_ofi_op_t *op, size_t received, int status)
{
    wf_xfer_t *xfer = op->xfer;
    if (t->destroying) {
        wf_ofi_op_release(t, op);
        return;
    }
    xfer->length = op->kind == WF_OFI_OP_RECV ? received : op->length;
    xfer->status = status;
    /* The status must be stored before done, which the caller polls. */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    xfer->done = 1;
    wf_ofi_op_release(t, op);
}

/* Record a failure that progress() returns; inside a post it waits for the next progress(). */
static int fail_unmatched(struct wf_transport *t, int rc)
{
    if (t->post_depth == 0)
        return rc;
    if (t->deferred_error == 0)
        t->deferred_error = rc;
    return 1;
}

static int deliver_immediate(struct wf_transport *t, uint32_t immediate)
{
    if (t->destroying)
        return 1;
    if (t->post_depth == 0) {
        if (t->on_remote_write != NULL)
            t->on_remote_write(t->callback_arg, immediate);
        else
            WF_OFI_WARN("rank %d received immediate 0x%08x but has no on_remote_write callback; dropped",
                        t->rank, immediate);
        return 1;
    }
    if (wf_held_immediates_add(&t->deferred_immediates, immediate) != 0) {
        wf_ofi_set_error(t, "out of memory while holding back immediate 0x%08x of an incoming RDMA write", immediate);
        return fail_unmatched(t, -ENOMEM);
    }
    return 1;
}

static int handle_entry(struct wf_transport *t, const struct fi_cq_data_entry *entry)
{
    /*
     * An incoming fi_writedata is reported with FI_REMOTE_WRITE | FI_REMOTE_CQ_DATA and is tied to
     * no posted operation. fi_cq(3) states that op_context is then undefined, not NULL: shm of libfabric
     * 1.17 leaves garbage in it for large writes, so the flags decide, never the context.
     */
    if (entry->flags & FI_REMOTE_WRITE) {
        if (entry->flags & FI_REMOTE_CQ_DATA)
            return deliver_immediate(t, (uint32_t)entry->data);
        WF_OFI_TRACE("rank %d ignored a remote write completion without data (flags 0x%llx)", t->rank,
                     (unsigned long long)entry->flags);
        return 0;
    }
    if (entry->op_context == NULL) {
        WF_OFI_TRACE("rank %d ignored a completion without context (flags 0x%llx)", t->rank,
                     (unsigned long long)entry->flags);
        return 0;
    }
    complete_op(t, op_of_context(entry->op_context), entry->len, 0);
    return 1;
}

static int handle_error(struct wf_transport *t)
{
    struct fi_cq_err_entry err = {0};
    ssize_t n = fi_cq_readerr(t->cq, &err, 0);
    if (n == -FI_EAGAIN)
        return 0;
    if (n < 0) {
        wf_ofi_set_error(t, "fi_cq_readerr failed on provider %s: %s", provider_of(t), fi_strerror((int)-n));
        return wf_ofi_errno((int)-n);
    }
    char detail[256];
    const char *provider_text = fi_cq_strerror(t->cq, err.prov_errno, err.err_data, detail, sizeof(detail));
    if (provider_text == NULL)
        provider_text = "no provider detail";
    /* The shm provider of libfabric 1.17 reports some errors (FI_ETRUNC) as negative values. */
    int error = err.err < 0 ? -err.err : err.err;
    int rc = wf_ofi_errno(error);

    if (err.op_context == NULL) {
        /* A failed incoming write names no local operation, so nothing but the caller can react. */
        wf_ofi_set_error(t,
                         "an incoming RDMA write into a region of rank %d failed on provider %s: %s "
                         "(%s); the writing rank is unknown",
                         t->rank, provider_of(t), fi_strerror(error), provider_text);
        WF_OFI_WARN("%s", t->error);
        return fail_unmatched(t, rc);
    }

    wf_ofi_op_t *op = op_of_context(err.op_context);
    if (error == FI_ECANCELED) {
        /* weft cancelled it (a failed communicator drains its receives), so this is no new error. */
        WF_OFI_TRACE("%s of %zu bytes with rank %d (tag 0x%llx) cancelled", wf_ofi_op_name(op->kind), op->length,
                     op->peer, (unsigned long long)op->tag);
        complete_op(t, op, err.len, rc);
        return 1;
    }
    if (error == FI_ETRUNC && op->kind == WF_OFI_OP_RECV) {
        /* olen is the number of bytes cut off, but tcp;ofi_rxm and shm of libfabric 1.17 leave it 0. */
        char cut[64] = "";
        if (err.olen > 0)
            snprintf(cut, sizeof(cut), " by %zu bytes", err.olen);
        wf_ofi_set_error(t,
                         "tagged receive from rank %d with tag 0x%llx was truncated: the message is "
                         "longer than the %zu-byte buffer%s; post a larger receive",
                         op->peer, (unsigned long long)op->tag, op->length, cut);
    }
    else
        wf_ofi_set_error(t, "%s of %zu bytes with rank %d (%s 0x%llx) failed on provider %s: %s (%s)",
                         wf_ofi_op_name(op->kind), op->length, op->peer,
                         op->kind == WF_OFI_OP_WRITE ? "immediate" : "tag", (unsigned long long)op->tag,
                         provider_of(t), fi_strerror(error), provider_text);
    WF_OFI_WARN("%s", t->error);
    complete_op(t, op, err.len, rc);
    return 1;
}

int wf_ofi_poll(struct wf_transport *t)
{
    struct fi_cq_data_entry entries[WF_OFI_CQ_BATCH];
    ssize_t n = fi_cq_read(t->cq, entries, WF_OFI_CQ_BATCH);
    if (n == -FI_EAGAIN)
        return 0;
    if (n == -FI_EAVAIL)
        return handle_error(t);
    if (n < 0) {
        wf_ofi_set_error(t, "fi_cq_read failed on provider %s: %s; the transport of rank %d cannot continue",
                         provider_of(t), fi_strerror((int)-n), t->rank);
        WF_OFI_ERROR("%s", t->error);
        return wf_ofi_errno((int)-n);
    }

    int handled = 0;
    for (ssize_t i = 0; i < n; i++) {
        int rc = handle_entry(t, &entries[i]);
        if (rc < 0)
            return rc;
        handled += rc;
    }
    return handled;
}

int wf_ofi_progress(struct wf_transport *t)
{
    int handled = 0;
    if (t->deferred_immediates.count > 0)
        handled = (int)wf_held_immediates_deliver(&t->deferred_immediates, t->on_remote_write, t->callback_arg);

    if (t->deferred_error != 0) {
        int rc = t->deferred_error;
        t->deferred_error = 0;
        return rc;
    }
    int rc = wf_ofi_poll(t);
    return rc < 0 ? rc : handled + rc;
}

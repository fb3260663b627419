/* SPDX-License-Identifier: GPL-3.0-or-later */
/* dermlens train: transfer learning from the ImageNet backbone. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void log_line(void *user, const char *line)
{
    (void)user;
    if (isatty(2)) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "%s\n", line);
}

static int train_progress(void *user, double fraction, const char *stage)
{
    (void)user;
    if (!isatty(2)) return 0; /* one line per epoch only (log_line) when not a terminal */
    int w = 24, fill = (int)(fraction * w + 0.5);
    fprintf(stderr, "\r\033[K[");
    for (int i = 0; i < w; i++) fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %3d%% %s", (int)(fraction * 100 + 0.5), stage);
    return 0;
}

int cmd_train(int argc, char **argv)
{
    dl_train_config c;
    dl_train_config_defaults(&c);
    gchar **train = NULL, **val = NULL, *init = NULL, *exclude = NULL, *resize = NULL;
    gboolean scale_aug = FALSE, source_balance = FALSE, prior_shift = FALSE, restart = FALSE;
    gdouble scale_min = 0.30, scale_max = 1.40, aspect = 1.33, colour = 1.0, class_power = 0, ema = 0, mixup = 0;
    gchar *threads_arg = NULL;
    gchar *out = NULL, *head_out = NULL, *backbone = NULL, *ckpt = NULL, *log_csv = NULL;
    gchar *cut = NULL, *name = NULL, *train_split = NULL, *val_split = NULL, *select = NULL;
    gboolean resume = FALSE, head_only = FALSE, weighted = FALSE;
    gint seed = (gint)c.seed, max_per_class = 0;
    gdouble lr = c.lr, lr_head = c.lr_head, wd = c.weight_decay, ls = c.label_smoothing, dropout = c.dropout;
    GOptionEntry entries[] = {
        {"train", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &train, "Training set: class-subfolder dir or CSV (repeat to pool sets)", "DIR|CSV"},
        {"val", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &val, "Validation set (tuning, early stopping, calibration; repeat to pool sets)", "DIR|CSV"},
        {"train-split", 0, 0, G_OPTION_ARG_STRING, &train_split, "CSV only: keep rows with this `split` value", "S"},
        {"val-split", 0, 0, G_OPTION_ARG_STRING, &val_split, "CSV only: split value for --val", "S"},
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &out, "Output model file", "FILE"},
        {"head-output", 0, 0, G_OPTION_ARG_FILENAME, &head_out, "Also write the stage-1 (frozen backbone) model", "FILE"},
        {"backbone", 'b', 0, G_OPTION_ARG_FILENAME, &backbone, "ImageNet backbone model (default: shipped MobileNetV2)", "FILE"},
        {"head-only", 0, 0, G_OPTION_ARG_NONE, &head_only, "Stage 1 only: frozen backbone + new head (the original design)", NULL},
        {"epochs-head", 0, 0, G_OPTION_ARG_INT, &c.epochs_head, "Stage-1 epochs (default 40)", "N"},
        {"epochs", 'e', 0, G_OPTION_ARG_INT, &c.epochs, "Stage-2 fine-tuning epochs (default 12)", "N"},
        {"views", 0, 0, G_OPTION_ARG_INT, &c.views, "Augmented views cached per training image (default 4; view 0 is the clean image)", "V"},
        {"batch", 0, 0, G_OPTION_ARG_INT, &c.batch, "Batch size (default 32)", "B"},
        {"lr-head", 0, 0, G_OPTION_ARG_DOUBLE, &lr_head, "Stage-1 learning rate (Adam, default 1e-3)", "LR"},
        {"lr", 0, 0, G_OPTION_ARG_DOUBLE, &lr, "Stage-2 learning rate (AdamW, warm-up + cosine, default 3e-4)", "LR"},
        {"weight-decay", 0, 0, G_OPTION_ARG_DOUBLE, &wd, "Decoupled weight decay (default 1e-4)", "WD"},
        {"label-smoothing", 0, 0, G_OPTION_ARG_DOUBLE, &ls, "Stage-2 label smoothing (default 0.1)", "EPS"},
        {"dropout", 0, 0, G_OPTION_ARG_DOUBLE, &dropout, "Head dropout (default 0.5)", "P"},
        {"hidden", 0, 0, G_OPTION_ARG_INT, &c.hidden, "Head hidden units (default 512)", "N"},
        {"warmup", 0, 0, G_OPTION_ARG_INT, &c.warmup_epochs, "Stage-2 warm-up epochs (default 1)", "N"},
        {"patience", 0, 0, G_OPTION_ARG_INT, &c.patience, "Early stopping patience on val balanced accuracy (default 4; 0 = off)", "N"},
        {"class-weighted", 0, 0, G_OPTION_ARG_NONE, &weighted, "Class-weighted loss instead of class-balanced sampling", NULL},
        {"cut", 0, 0, G_OPTION_ARG_STRING, &cut, "Fine-tune every layer after this node (default: start of the last resolution stage)", "NODE"},
        {"max-per-class", 0, 0, G_OPTION_ARG_INT, &max_per_class, "Use at most N images per class (quick runs, tests)", "N"},
        {"seed", 0, 0, G_OPTION_ARG_INT, &seed, "Random seed (default 42)", "S"},
        {"threads", 't', 0, G_OPTION_ARG_STRING, &threads_arg, "Threads, 1..256 (default: all cores)", "N"},
        {"checkpoint", 0, 0, G_OPTION_ARG_FILENAME, &ckpt, "Checkpoint file (default: OUTPUT.ckpt), written atomically every epoch", "FILE"},
        {"resume", 0, 0, G_OPTION_ARG_NONE, &resume, "Continue an interrupted run from its checkpoint (an unusable checkpoint stops the run; it is never overwritten)", NULL},
        {"restart", 0, 0, G_OPTION_ARG_NONE, &restart, "Start over even if a checkpoint exists (it is replaced after the first epoch)", NULL},
        {"log", 0, 0, G_OPTION_ARG_FILENAME, &log_csv, "Per-epoch CSV log", "FILE"},
        {"name", 0, 0, G_OPTION_ARG_STRING, &name, "Model name stored in the file", "NAME"},
        {"init", 0, 0, G_OPTION_ARG_FILENAME, &init, "Warm start: copy same-named weights from this model (head too if its classes match)", "MODEL"},
        {"exclude", 0, 0, G_OPTION_ARG_FILENAME, &exclude, "Drop these image ids (one per line) from train and val (e.g. near-duplicates of test images)", "FILE"},
        {"resize", 0, 0, G_OPTION_ARG_STRING, &resize, "Preprocessing recorded in the model: squash (whole image), center_crop or pad (aspect kept, black border)", "MODE"},
        {"max-side", 0, 0, G_OPTION_ARG_INT, &c.max_side, "Decode training images keeping their aspect, longer side at most N (default 320)", "N"},
        {"scale-aug", 0, 0, G_OPTION_ARG_NONE, &scale_aug, "Random-resized-crop views: zoom in and out, aspect jitter, any rotation, stronger colour jitter", NULL},
        {"scale-min", 0, 0, G_OPTION_ARG_DOUBLE, &scale_min, "Smallest crop area relative to the preprocessing's view (default 0.30)", "A"},
        {"scale-max", 0, 0, G_OPTION_ARG_DOUBLE, &scale_max, "Largest (> 1 zooms out, reflect fill; default 1.40)", "A"},
        {"aspect-jitter", 0, 0, G_OPTION_ARG_DOUBLE, &aspect, "Aspect ratio jitter factor (default 1.33)", "R"},
        {"colour-jitter", 0, 0, G_OPTION_ARG_DOUBLE, &colour, "Colour jitter strength with --scale-aug (default 1)", "S"},
        {"source-balance", 0, 0, G_OPTION_ARG_NONE, &source_balance, "Draw each class equally from every --train set that has it", NULL},
        {"class-power", 0, 0, G_OPTION_ARG_DOUBLE, &class_power, "Class sampling weight count^P (0 = balanced, the default; 1 = natural)", "P"},
        {"epoch-size", 0, 0, G_OPTION_ARG_INT, &c.epoch_size, "Images drawn per stage-2 epoch (default: the training set's size)", "N"},
        {"ema", 0, 0, G_OPTION_ARG_DOUBLE, &ema, "Exponential moving average of the weights, decay per step (e.g. 0.998; 0 = off): evaluated and shipped", "D"},
        {"mixup", 0, 0, G_OPTION_ARG_DOUBLE, &mixup, "Probability per batch of mixup or cutmix (half each; full fine-tuning only)", "P"},
        {"select", 0, 0, G_OPTION_ARG_STRING, &select, "Which weights to keep: best (the epoch with the best validation balanced accuracy, default) or last (the end of the schedule; the EMA with --ema)", "best|last"},
        {"prior-shift", 0, 0, G_OPTION_ARG_NONE, &prior_shift, "Choose a logit prior shift on validation (alpha x log training prior, folded into the model)", NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL}};
    GOptionContext *ctx = g_option_context_new("- train a lesion classifier by transfer learning");
    g_option_context_set_summary(ctx,
        "Stage 1 (the original design): the ImageNet backbone stays frozen; a new head\n"
        "(dense 512 ReLU, dropout 0.5, dense K) learns from cached features of several augmented\n"
        "views per image, with class-balanced sampling. Stage 2 fine-tunes the top of the backbone\n"
        "with the head (AdamW, warm-up, cosine decay, label smoothing, early stopping on validation\n"
        "balanced accuracy). Then temperature scaling and an out-of-distribution detector are fitted\n"
        "on the data and stored in the model with its provenance.\n\n"
        "Example:\n  dermlens train --train ham10000/train --val ham10000/val -o lesion.safetensors");
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *gerr = NULL;
    gchar *cmdline = g_strjoinv(" ", argv);
    if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
        fprintf(stderr, "dermlens train: %s\n", gerr->message);
        g_error_free(gerr);
        g_option_context_free(ctx);
        g_free(cmdline);
        return 2;
    }
    g_option_context_free(ctx);
    int trc = cli_parse_threads("train", threads_arg, &c.threads);
    g_free(threads_arg);
    if (trc != 0) {
        g_free(cmdline);
        return 2;
    }
    if (!train || !train[0] || !val || !val[0] || !out) {
        fprintf(stderr, "dermlens train: need --train, --val and -o (see --help)\n");
        g_free(cmdline);
        return 2;
    }
    gchar *full_cmd = g_strconcat("dermlens ", cmdline, NULL);
    c.train_sets = (const char *const *)train;
    c.n_train_sets = (int)g_strv_length(train);
    c.val_set = val[0];
    c.val_sets = (const char *const *)val;
    c.n_val_sets = (int)g_strv_length(val);
    c.init_model = init;
    c.exclude = exclude;
    c.resize = resize;
    c.scale_aug = scale_aug;
    c.scale_min = (float)scale_min;
    c.scale_max = (float)scale_max;
    c.aspect_jitter = (float)aspect;
    c.colour_jitter = (float)colour;
    c.source_balance = source_balance;
    c.class_power = (float)class_power;
    c.ema = (float)ema;
    c.mixup = (float)mixup;
    c.prior_shift = prior_shift;
    c.restart = restart;
    if (select && strcmp(select, "best") != 0 && strcmp(select, "last") != 0) {
        fprintf(stderr, "dermlens train: --select must be best or last, not '%s'\n", select);
        return 2;
    }
    c.select_last = select && strcmp(select, "last") == 0;
    c.train_split = train_split;
    c.val_split = val_split;
    c.output = out;
    c.head_output = head_out;
    c.backbone = backbone ? backbone : NULL;
    c.checkpoint = ckpt;
    c.log_csv = log_csv;
    c.cut = cut;
    if (name) c.name = name;
    c.command_line = full_cmd;
    c.stages = head_only ? 1 : 2;
    c.class_weighted = weighted;
    c.max_per_class = max_per_class;
    c.resume = resume;
    c.seed = (unsigned)seed;
    c.lr = (float)lr;
    c.lr_head = (float)lr_head;
    c.weight_decay = (float)wd;
    c.label_smoothing = (float)ls;
    c.dropout = (float)dropout;
    c.progress = train_progress;
    c.log = log_line;
    if (!c.backbone) {
        static char bbpath[4096];
        const char *def = cli_default_model(NULL);
        /* the backbone is the ImageNet model next to the default model */
        snprintf(bbpath, sizeof bbpath, "%s", def);
        char *slash = strrchr(bbpath, '/');
        snprintf(slash ? slash + 1 : bbpath, sizeof bbpath - (slash ? (size_t)(slash + 1 - bbpath) : 0),
                 "mobilenet_v2_imagenet.safetensors");
        c.backbone = bbpath;
    }
    dl_error err = {0};
    int rc = dl_train(&c, &err);
    if (rc) fprintf(stderr, "%sdermlens train: %s\n", isatty(2) ? "\r\033[K" : "", err.message);
    g_free(cmdline);
    g_free(full_cmd);
    g_strfreev(train);
    g_strfreev(val);
    g_free(init); g_free(exclude); g_free(resize); g_free(out); g_free(head_out); g_free(backbone);
    g_free(ckpt); g_free(log_csv); g_free(cut); g_free(name); g_free(train_split); g_free(val_split);
    return rc ? 1 : 0;
}

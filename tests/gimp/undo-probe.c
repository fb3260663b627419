/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Test helper for the real-GIMP tests: a real Edit > Undo in headless GIMP.
 * Neither GIMP 2.10 nor 3.0 has a PDB procedure that undoes (only
 * gimp-image-undo-group-start/end, enable/disable, freeze/thaw), and
 * gimp-console loads no core modules, so this is an LD_PRELOAD library for
 * gimp-console. It wraps libgimpbase's gimp_parasite_copy (which the core
 * calls whenever a parasite is attached) to install, once, an emission hook
 * on the images' "parasite-attached" signal. Then attaching a non-undoable
 * parasite named
 *   "dermlens-undo-probe"  appends "probe DEPTH TOP" to $DL_UNDO_PROBE_LOG,
 *   "dermlens-undo-now"    appends "undo DEPTH TOP OK DEPTH2 TOP2": the same,
 *                          then one gimp_image_undo() (the core function
 *                          behind Edit > Undo), its result and the stack
 *                          afterwards,
 * (tab-separated) where DEPTH is the number of steps on the image's undo
 * stack (a group counts as one) and TOP the name of the newest step.
 * The core functions are looked up at run time: the gimp-console binaries
 * export them (for modules). In plug-in processes, which inherit
 * LD_PRELOAD, they are absent and the wrapper only passes calls through.
 * Build: cc -shared -fPIC $(pkg-config --cflags --libs gobject-2.0) -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <glib-object.h>
#include <gmodule.h>
#include <stdio.h>
#include <string.h>

typedef struct _GimpParasite GimpParasite;

static GType (*image_get_type)(void);
static gboolean (*image_undo)(gpointer image);
static gpointer (*image_get_undo_stack)(gpointer image);
static gint (*undo_stack_get_depth)(gpointer stack);
static gpointer (*undo_stack_peek)(gpointer stack);
static const gchar *(*object_get_name)(gconstpointer object);

static void write_state(FILE *f, gpointer image)
{
    gpointer stack = image_get_undo_stack(image);
    gpointer top = stack ? undo_stack_peek(stack) : NULL;
    const gchar *name = top ? object_get_name(top) : NULL;
    fprintf(f, "%d\t%s", stack ? undo_stack_get_depth(stack) : -1,
            name && name[0] ? name : "-");
}

static gboolean on_parasite(GSignalInvocationHint *hint, guint n, const GValue *values,
                            gpointer data)
{
    (void)hint;
    (void)data;
    if (n < 2 || !G_VALUE_HOLDS_STRING(&values[1]))
        return TRUE;
    const gchar *name = g_value_get_string(&values[1]);
    gboolean probe = name && strcmp(name, "dermlens-undo-probe") == 0;
    gboolean undo = name && strcmp(name, "dermlens-undo-now") == 0;
    const gchar *log = g_getenv("DL_UNDO_PROBE_LOG");
    if ((!probe && !undo) || !log)
        return TRUE;
    gpointer image = g_value_get_object(&values[0]);
    FILE *f = fopen(log, "a");
    if (!f)
        return TRUE;
    fputs(probe ? "probe\t" : "undo\t", f);
    write_state(f, image);
    if (undo) {
        gboolean ok = image_undo(image);
        fprintf(f, "\t%d\t", ok ? 1 : 0);
        write_state(f, image);
    }
    fputc('\n', f);
    fclose(f);
    return TRUE; /* stay connected */
}

static void install_hook(void)
{
    static int tried;
    if (tried)
        return;
    tried = 1;
    /* Core-only functions: absent in plug-ins (libgimp has no undo stack). */
    undo_stack_get_depth = (gint(*)(gpointer))dlsym(RTLD_DEFAULT, "gimp_undo_stack_get_depth");
    undo_stack_peek = (gpointer(*)(gpointer))dlsym(RTLD_DEFAULT, "gimp_undo_stack_peek");
    image_undo = (gboolean(*)(gpointer))dlsym(RTLD_DEFAULT, "gimp_image_undo");
    image_get_undo_stack = (gpointer(*)(gpointer))dlsym(RTLD_DEFAULT, "gimp_image_get_undo_stack");
    object_get_name = (const gchar *(*)(gconstpointer))dlsym(RTLD_DEFAULT, "gimp_object_get_name");
    image_get_type = (GType(*)(void))dlsym(RTLD_DEFAULT, "gimp_image_get_type");
    if (!undo_stack_get_depth || !undo_stack_peek || !image_undo || !image_get_undo_stack ||
        !object_get_name || !image_get_type)
        return;
    GType t = image_get_type();
    g_type_class_ref(t); /* kept: the hook needs the signal */
    guint sig = g_signal_lookup("parasite-attached", t);
    if (sig)
        g_signal_add_emission_hook(sig, 0, on_parasite, NULL, NULL);
    if (g_getenv("DL_UNDO_PROBE_LOG")) {
        FILE *f = fopen(g_getenv("DL_UNDO_PROBE_LOG"), "a");
        if (f) {
            fprintf(f, "hook\t%s\n", sig ? "installed" : "no-signal");
            fclose(f);
        }
    }
}

GimpParasite *gimp_parasite_copy(const GimpParasite *parasite)
{
    static GimpParasite *(*real)(const GimpParasite *);
    if (!real)
        real = (GimpParasite * (*)(const GimpParasite *)) dlsym(RTLD_NEXT, "gimp_parasite_copy");
    install_hook();
    return real ? real(parasite) : NULL;
}

; SPDX-License-Identifier: GPL-3.0-or-later
; GIMP 2.10 Script-Fu, first session: set up each case, run the DermLens
; plug-in non-interactively, save XCF. The shell driver prepends
; (define dl-work "...") and (define dl-data "...").

(define (dl-path name) (string-append dl-work "/" name))
;; Pixel calls (gimp-drawable-get-pixel) return the layer's real bytes
;; (float, u16) only once the script declares itself precision-aware;
;; otherwise GIMP 2.10 hands out 8-bit gamma values.
(gimp-plugin-enable-precision)

(define (dl-save-png img drawable path)
  ; no interlace, no metadata chunks: plain pixels for the checker
  (file-png-save2 RUN-NONINTERACTIVE img drawable path path 0 9 0 0 0 0 0 0 0))

(define (dl-first-layer img) (vector-ref (cadr (gimp-image-get-layers img)) 0))

; Export exactly the pixels the plug-in classifies (selection bounds within
; the layer, 8-bit) for the CLI reference.
(define (dl-export-region img layer path)
  (let* ((b (gimp-drawable-mask-intersect layer))
         (off (gimp-drawable-offsets layer))
         (x (+ (car off) (list-ref b 1)))
         (y (+ (cadr off) (list-ref b 2)))
         (w (list-ref b 3))
         (h (list-ref b 4))
         (dup (car (gimp-image-duplicate img))))
    (if (not (= (car (gimp-image-get-precision dup)) PRECISION-U8-GAMMA))
        (gimp-image-convert-precision dup PRECISION-U8-GAMMA))
    (gimp-selection-none dup)
    (gimp-image-crop dup w h x y)
    (dl-save-png dup (dl-first-layer dup) path)
    (gimp-image-delete dup)))

(define (dl-case name file setup)
  (let* ((img (car (gimp-file-load RUN-NONINTERACTIVE file file))))
    (setup img)
    (let ((layer (dl-first-layer img)))
      (dl-save-png img layer (dl-path (string-append name "-before.png")))
      (dl-export-region img layer (dl-path (string-append name "-ref.png")))
      (plug-in-dermlens-classify RUN-NONINTERACTIVE img layer "" "gradcam" 60 3 TRUE TRUE 0)
      (gimp-xcf-save 0 img layer (dl-path (string-append name ".xcf"))
                     (dl-path (string-append name ".xcf")))
      (gimp-image-delete img))))

; The same for an image made in the script (not loaded from a file).
(define (dl-case-new name w h rgb)
  (let* ((img (car (gimp-image-new w h RGB)))
         (layer (car (gimp-layer-new img w h RGB-IMAGE "plain" 100 LAYER-MODE-NORMAL))))
    (gimp-image-insert-layer img layer 0 0)
    (gimp-context-set-foreground rgb)
    (gimp-drawable-fill layer FILL-FOREGROUND)
    (dl-save-png img layer (dl-path (string-append name "-before.png")))
    (dl-export-region img layer (dl-path (string-append name "-ref.png")))
    (plug-in-dermlens-classify RUN-NONINTERACTIVE img layer "" "gradcam" 60 3 TRUE TRUE 0)
    (gimp-xcf-save 0 img layer (dl-path (string-append name ".xcf")) (dl-path (string-append name ".xcf")))
    (gimp-image-delete img)))

(define dl-mel (string-append dl-data "/lesions/ISIC_0031711.jpg"))
(define dl-nv (string-append dl-data "/lesions/ISIC_0025921.jpg"))
(define dl-bkl (string-append dl-data "/lesions/ISIC_0029674.jpg"))

(dl-case "rgb" dl-mel (lambda (img) #t))
(dl-case "selection" dl-nv
         (lambda (img) (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 40 30 120 100)))
(dl-case "grey" dl-bkl (lambda (img) (gimp-image-convert-grayscale img)))
(dl-case "u16" dl-mel (lambda (img) (gimp-image-convert-precision img PRECISION-U16-GAMMA)))
(dl-case "offset" dl-nv (lambda (img) (gimp-image-resize img 284 244 30 10)))
; Over 1024 px on a side: analysed from GIMP's reduced copy, the overlay
; written at the region's size.
(dl-case "big" dl-mel (lambda (img) (gimp-image-scale img 2400 1800)))
; Not lesion images: a blank white image and a plain skin-coloured one.
(dl-case-new "blank" 224 224 '(255 255 255))
(dl-case-new "skin" 224 224 '(224 172 150))

; Outline mode (overlay-style 1): the contour of the map's top 20 %.
(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE dl-mel dl-mel)))
       (layer (dl-first-layer img)))
  (dl-save-png img layer (dl-path "outline-before.png"))
  (plug-in-dermlens-classify RUN-NONINTERACTIVE img layer "" "gradcam" 60 3 TRUE TRUE 1)
  (gimp-xcf-save 0 img layer (dl-path "outline.xcf") (dl-path "outline.xcf"))
  (gimp-image-delete img))

; Teaching figure: a new image (the region and its overlay side by side, a
; caption), saved as XCF and exported flattened as PNG; the original image
; is saved again after, to show it untouched.
(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE dl-mel dl-mel)))
       (layer (dl-first-layer img)))
  (dl-save-png img layer (dl-path "figure-before.png"))
  (let* ((port (open-output-file (dl-path "figure-original.txt")))
         (state (lambda ()
                  ; layers, parasites, the DermLens parasite (1: there)
                  (display (car (gimp-image-get-layers img)) port)
                  (display " " port)
                  (display (length (cadr (gimp-image-get-parasite-list img))) port)
                  (display " " port)
                  (display (if (member "dermlens-result" (cadr (gimp-image-get-parasite-list img)))
                               1 0) port)
                  (display " " port)))
         (before (state))
         (fig (car (plug-in-dermlens-figure RUN-NONINTERACTIVE img layer "" "gradcam" 60 3 0)))
         (flat (car (gimp-image-duplicate fig))))
    (gimp-xcf-save 0 fig (dl-first-layer fig) (dl-path "figure.xcf") (dl-path "figure.xcf"))
    (gimp-image-flatten flat)
    (dl-save-png flat (dl-first-layer flat) (dl-path "figure.png"))
    (gimp-image-delete flat)
    (gimp-image-delete fig)
    (state)
    (newline port)
    (close-output-port port))
  (dl-save-png img layer (dl-path "figure-after.png"))
  (gimp-image-delete img))

; A call the plug-in must refuse: prepare returns the drawable to pass. The
; error is caught here and recorded ("refused N-layers" in facts-file), so
; it is not an "execution error" in the log.
(define (dl-refusal facts-file prepare)
  (let* ((img (car (gimp-file-load RUN-NONINTERACTIVE dl-bkl dl-bkl)))
         (drawable (prepare img (dl-first-layer img)))
         (port (open-output-file (dl-path facts-file))))
    (display (if (catch #f (plug-in-dermlens-classify RUN-NONINTERACTIVE img drawable "" "gradcam"
                                                      60 3 TRUE TRUE 0))
                 "accepted" "refused") port)
    (display " " port)
    (display (car (gimp-image-get-layers img)) port)
    (newline port)
    (close-output-port port)
    (gimp-image-delete img)))

; A 4 x 4 selection: too small.
(dl-refusal "tiny-facts.txt"
            (lambda (img layer)
              (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 10 10 4 4)
              layer))

; A layer mask as the drawable (wrong type).
(dl-refusal "mask-facts.txt"
            (lambda (img layer)
              (let ((mask (car (gimp-layer-create-mask layer ADD-WHITE-MASK))))
                (gimp-layer-add-mask layer mask)
                mask)))

;; ---- fault cases (issue 8) ----

; Empty selection: a rectangle selected, then subtracted: a selection that
; exists but holds no pixels. GIMP's convention: the whole layer.
(dl-case "empty" dl-nv
         (lambda (img)
           (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 40 30 120 100)
           (gimp-image-select-rectangle img CHANNEL-OP-SUBTRACT 40 30 120 100)))

; Every byte of a layer as decimal numbers, one pixel a line (small layers
; only: one PDB call per pixel).
(define (dl-dump-pixels layer path)
  (let ((port (open-output-file path))
        (w (car (gimp-drawable-width layer)))
        (h (car (gimp-drawable-height layer))))
    (do ((y 0 (+ y 1))) ((>= y h))
      (do ((x 0 (+ x 1))) ((>= x w))
        (let ((px (cadr (gimp-drawable-get-pixel layer x y))))
          (do ((i 0 (+ i 1))) ((>= i (vector-length px)))
            (display (vector-ref px i) port)
            (display " " port))
          (newline port))))
    (close-output-port port)))

(define (dl-fill-rect img layer x y w h rgb)
  (gimp-image-select-rectangle img CHANNEL-OP-REPLACE x y w h)
  (gimp-context-set-foreground rgb)
  (gimp-drawable-edit-fill layer FILL-FOREGROUND)
  (gimp-selection-none img))

(define (dl-set-rect layer x0 y0 w h px)
  (do ((y y0 (+ y 1))) ((>= y (+ y0 h)))
    (do ((x x0 (+ x 1))) ((>= x (+ x0 w)))
      (gimp-drawable-set-pixel layer x y (vector-length px) px))))

; 32-bit linear float layer (64 x 64, so also the small-image label case)
; with NaN, +Inf and -Inf pixels. The plug-in's rule: NaN and -Inf read as
; 0, +Inf as 1; the reference PNG for the CLI has those blocks painted
; black, white, black.
(define dl-nan  (vector 0 0 192 127 0 0 192 127 0 0 192 127))
(define dl-pinf (vector 0 0 128 127 0 0 128 127 0 0 128 127))
(define dl-ninf (vector 0 0 128 255 0 0 128 255 0 0 128 255))
(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE dl-mel dl-mel))))
  (gimp-image-crop img 64 64 80 80)
  (let* ((layer (dl-first-layer img))
         (ref (car (gimp-image-duplicate img)))
         (rlayer (dl-first-layer ref)))
    (dl-fill-rect ref rlayer 8 8 16 8 '(0 0 0))
    (dl-fill-rect ref rlayer 8 24 16 8 '(255 255 255))
    (dl-fill-rect ref rlayer 8 40 16 8 '(0 0 0))
    (dl-save-png ref rlayer (dl-path "float-ref.png"))
    (gimp-image-delete ref)
    (gimp-image-convert-precision img PRECISION-FLOAT-LINEAR)
    (dl-set-rect layer 8 8 16 8 dl-nan)
    (dl-set-rect layer 8 24 16 8 dl-pinf)
    (dl-set-rect layer 8 40 16 8 dl-ninf)
    (dl-dump-pixels layer (dl-path "float-before.txt"))
    (plug-in-dermlens-classify RUN-NONINTERACTIVE img layer "" "gradcam" 60 3 TRUE TRUE 0)
    (gimp-xcf-save 0 img layer (dl-path "float.xcf") (dl-path "float.xcf"))
    (gimp-image-delete img)))

; A 1 x 1 layer must be refused (the message is checked in the log) and
; nothing added; its pixel stays as it was.
(let* ((img (car (gimp-image-new 1 1 RGB)))
       (layer (car (gimp-layer-new img 1 1 RGB-IMAGE "tiny" 100 LAYER-MODE-NORMAL)))
       (port (open-output-file (dl-path "tiny1-facts.txt"))))
  (gimp-image-insert-layer img layer 0 0)
  (gimp-drawable-set-pixel layer 0 0 3 (vector 12 34 56))
  (display (if (catch #f (plug-in-dermlens-classify RUN-NONINTERACTIVE img layer "" "gradcam"
                                                    60 3 TRUE TRUE 0))
               "accepted" "refused") port)
  (display " " port)
  (display (car (gimp-image-get-layers img)) port)
  (display " " port)
  (display (length (cadr (gimp-image-get-parasite-list img))) port)
  (display " " port)
  (display (vector->list (cadr (gimp-drawable-get-pixel layer 0 0))) port)
  (newline port)
  (close-output-port port)
  (gimp-image-delete img))

; Undo: one real undo step (gimp_image_undo in GIMP's core, reached through
; the undo-probe LD_PRELOAD helper: GIMP 2.10 has no PDB procedure that
; undoes) must remove everything the plug-in added. Images loaded in batch
; mode come with undo disabled; a displayed image has it enabled.
(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE dl-bkl dl-bkl)))
       (layer (dl-first-layer img))
       (port (open-output-file (dl-path "undo-facts.txt")))
       (state (lambda (tag)
                (let ((ls (gimp-image-get-layers img)))
                  (display tag port) (display " " port)
                  (display (car ls) port) (display " " port)
                  (display (if (member "dermlens-result" (cadr (gimp-image-get-parasite-list img)))
                               1 0) port)
                  (display " " port)
                  ; children of a group on top (0 when the top layer is not a group)
                  (let ((top (vector-ref (cadr ls) 0)))
                    (display (if (= (car (gimp-item-is-group top)) TRUE)
                                 (car (gimp-item-get-children top)) 0) port))
                  (newline port)))))
  (gimp-image-undo-enable img)
  (dl-save-png img layer (dl-path "undo-before.png"))
  (state "before")
  (gimp-image-attach-parasite img '("dermlens-undo-probe" 0 "1"))
  (plug-in-dermlens-classify RUN-NONINTERACTIVE img layer "" "gradcam" 60 3 TRUE TRUE 0)
  (gimp-image-attach-parasite img '("dermlens-undo-probe" 0 "1"))
  (state "classified")
  (gimp-image-attach-parasite img '("dermlens-undo-now" 0 "1"))
  (state "undone")
  (close-output-port port)
  (dl-save-png img (dl-first-layer img) (dl-path "undo-after.png"))
  (gimp-image-delete img))

; "reviewed failed" of a batch call into a facts file.
(define (dl-batch-facts r name)
  (let ((port (open-output-file (dl-path name))))
    (display (car r) port)
    (display " " port)
    (display (cadr r) port)
    (newline port)
    (close-output-port port)))

(dl-batch-facts (plug-in-dermlens-batch RUN-NONINTERACTIVE (dl-path "batch-in") (dl-path "batch.csv")
                                        (dl-path "batch-out") "" "gradcam" 60)
                "batch-facts.txt")

; The same folder with the ground truth from a labels CSV (the 8-argument
; plug-in-dermlens-batch-labels), the CSV only (no output folder).
(dl-batch-facts (plug-in-dermlens-batch-labels RUN-NONINTERACTIVE (dl-path "batch-in") (dl-path "batch-labels.csv")
                                               "" "" "gradcam" 60 (dl-path "labels.csv"))
                "batch-labels-facts.txt")

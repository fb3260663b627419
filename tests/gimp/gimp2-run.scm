; SPDX-License-Identifier: GPL-3.0-or-later
; GIMP 2.10 Script-Fu, first session: set up each case, run the DermLens
; plug-in non-interactively, save XCF. The shell driver prepends
; (define dl-work "...") and (define dl-data "...").

(define (dl-path name) (string-append dl-work "/" name))

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
      (plug-in-dermlens-classify RUN-NONINTERACTIVE img layer "" "gradcam" 60 3 TRUE TRUE)
      (gimp-xcf-save 0 img layer (dl-path (string-append name ".xcf"))
                     (dl-path (string-append name ".xcf")))
      (gimp-image-delete img))))

(define dl-mel (string-append dl-data "/lesions/ISIC_0031711.jpg"))
(define dl-nv (string-append dl-data "/lesions/ISIC_0025921.jpg"))
(define dl-bkl (string-append dl-data "/lesions/ISIC_0029674.jpg"))

(dl-case "rgb" dl-mel (lambda (img) #t))
(dl-case "selection" dl-nv
         (lambda (img) (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 40 30 120 100)))
(dl-case "grey" dl-bkl (lambda (img) (gimp-image-convert-grayscale img)))
(dl-case "u16" dl-mel (lambda (img) (gimp-image-convert-precision img PRECISION-U16-GAMMA)))
(dl-case "offset" dl-nv (lambda (img) (gimp-image-resize img 284 244 30 10)))

; A selection that misses the layer must fail cleanly (the error is caught
; here and recorded, so it is not an "execution error" in the log).
(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE dl-bkl dl-bkl)))
       (layer (dl-first-layer img))
       (port (open-output-file (dl-path "tiny-facts.txt"))))
  (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 10 10 4 4)
  (display (if (catch #f (plug-in-dermlens-classify RUN-NONINTERACTIVE img layer "" "gradcam"
                                                    60 3 TRUE TRUE))
               "accepted" "refused") port)
  (display " " port)
  (display (car (gimp-image-get-layers img)) port)
  (newline port)
  (close-output-port port)
  (gimp-image-delete img))

(let ((r (plug-in-dermlens-batch RUN-NONINTERACTIVE (dl-path "batch-in") (dl-path "batch.csv")
                                 (dl-path "batch-out") "" "gradcam" 60))
      (port (open-output-file (dl-path "batch-facts.txt"))))
  (display (car r) port)
  (display " " port)
  (display (cadr r) port)
  (newline port)
  (close-output-port port))

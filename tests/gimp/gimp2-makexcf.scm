; SPDX-License-Identifier: GPL-3.0-or-later
; GIMP 2.10 Script-Fu, run by run-gimp2.sh before the batch test: a file
; only GIMP opens (XCF), two folders below its class folder (bkl), with a
; second layer so that the batch has to flatten it. The driver prepends
; (define dl-work "...") and (define dl-data "...").
(let* ((src (string-append dl-data "/lesions/ISIC_0029674.jpg"))
       (dst (string-append dl-work "/batch-in/bkl/nested/deeper/ISIC_0029674.xcf"))
       (img (car (gimp-file-load RUN-NONINTERACTIVE src src)))
       (layer (vector-ref (cadr (gimp-image-get-layers img)) 0))
       (top (car (gimp-layer-new img 24 24 RGBA-IMAGE "corner" 100 LAYER-MODE-NORMAL))))
  (gimp-image-insert-layer img top 0 -1)
  (gimp-drawable-fill top FILL-WHITE)
  (gimp-xcf-save 0 img layer dst dst)
  (gimp-image-delete img))

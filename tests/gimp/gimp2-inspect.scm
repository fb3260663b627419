; SPDX-License-Identifier: GPL-3.0-or-later
; GIMP 2.10 Script-Fu, second session: re-open each XCF and write what is in
; it for check_result.py. The shell driver prepends (define dl-work "...").

(define (dl-path name) (string-append dl-work "/" name))
;; Pixel calls (gimp-drawable-get-pixel) return the layer's real bytes
;; (float, u16) only once the script declares itself precision-aware;
;; otherwise GIMP 2.10 hands out 8-bit gamma values.
(gimp-plugin-enable-precision)
(define dl-tab (string (integer->char 9)))

(define (dl-save-png img drawable path)
  (file-png-save2 RUN-NONINTERACTIVE img drawable path path 0 9 0 0 0 0 0 0 0))

(define (dl-prefix? p s)
  (and (>= (string-length s) (string-length p))
       (string=? p (substring s 0 (string-length p)))))

(define (dl-fact port kind item)
  (let ((off (gimp-drawable-offsets item)))
    (for-each (lambda (v) (display v port) (display dl-tab port))
              (list kind (car (gimp-item-get-name item))
                    (car (gimp-item-is-text-layer item))
                    (car off) (cadr off)
                    (car (gimp-drawable-width item))))
    (display (car (gimp-drawable-height item)) port)
    (newline port)))

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

(define (dl-write-file path text)
  (let ((port (open-output-file path)))
    (display text port)
    (close-output-port port)))

; Text layers: their text (GIMP 2.10 text layers hold plain text) appended to
; C-text.txt, and "name <tab> font-size-px <tab> r g b" to C-textfacts.txt.
(define (dl-text-facts c tport fport)
  (let ((txt (car (gimp-text-layer-get-text c)))
        (size (gimp-text-layer-get-font-size c))
        (col (car (gimp-text-layer-get-color c))))
    (display txt tport)
    (newline tport)
    (display (car (gimp-item-get-name c)) fport)
    (display dl-tab fport)
    (display (car size) fport)
    (display dl-tab fport)
    (display (car col) fport) (display " " fport)
    (display (cadr col) fport) (display " " fport)
    (display (caddr col) fport)
    (newline fport)))

(define (dl-inspect name)
  (let* ((xcf (dl-path (string-append name ".xcf")))
         (img (car (gimp-xcf-load 0 xcf xcf)))
         (port (open-output-file (dl-path (string-append name "-facts.txt"))))
         (tport (open-output-file (dl-path (string-append name "-text.txt"))))
         (fport (open-output-file (dl-path (string-append name "-textfacts.txt")))))
    (for-each
     (lambda (l)
       (if (= (car (gimp-item-is-group l)) TRUE)
           (begin
             (dl-fact port "group" l)
             (for-each
              (lambda (c)
                (let ((cname (car (gimp-item-get-name c))))
                  (dl-fact port "child" c)
                  (if (dl-prefix? "Saliency (" cname)
                      (dl-save-png img c (dl-path (string-append name "-overlay.png"))))
                  (if (dl-prefix? "Text background" cname)
                      (dl-save-png img c (dl-path (string-append name "-box.png"))))
                  (if (= (car (gimp-item-is-text-layer c)) TRUE)
                      (dl-text-facts c tport fport))))
              (vector->list (cadr (gimp-item-get-children l)))))
           (begin
             (dl-fact port "layer" l)
             (if (string=? name "float")
                 (dl-dump-pixels l (dl-path "float-after.txt"))
                 (dl-save-png img l (dl-path (string-append name "-after.png")))))))
     (vector->list (cadr (gimp-image-get-layers img))))
    (close-output-port port)
    (close-output-port tport)
    (close-output-port fport)
    (dl-write-file (dl-path (string-append name "-parasite.json"))
                   (caddr (car (gimp-image-get-parasite img "dermlens-result"))))
    (gimp-image-delete img)))

(for-each dl-inspect '("rgb" "selection" "grey" "u16" "offset" "empty" "float" "blank" "skin"))

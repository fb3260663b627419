; SPDX-License-Identifier: GPL-3.0-or-later
; GIMP 2.10 Script-Fu: a batch over ~40 images that the shell driver kills
; (kill -9 on the plug-in process) part-way. The driver prepends
; (define dl-work "..."). The call must fail (the plug-in died); the CSV
; left behind is checked by check_result.py.
(define (dl-path name) (string-append dl-work "/" name))
(let ((port (open-output-file (dl-path "batch-kill-facts.txt"))))
  (display (if (catch #f (plug-in-dermlens-batch RUN-NONINTERACTIVE (dl-path "batch-kill-in")
                                                 (dl-path "batch-kill.csv")
                                                 (dl-path "batch-kill-out") "" "gradcam" 60))
               "completed" "failed") port)
  (newline port)
  (close-output-port port))

"""The decision: engine margins in, window answers and plays out, one rule for every source.

Place in the pipeline: after the engines, before the plays store. A live
browser stream, a radio monitor and a file all take the same path:

* ``recognizer``: windows -> engine margins (with silence handled) ->
  ranked ``detection.Detection`` per window;
* ``stream``: a stream's detections -> plays, following per-track
  hypotheses along an offset line and accumulating evidence;
* ``evidence``: what a play rests on (time scale, pitch shift, the kind of
  edit);
* ``files``: a whole recording through the same stream decision, and its
  single answer (what ``audiocopy identify`` prints);
* ``calibration``: the rules that set thresholds on negative music;
* ``play``: the play record itself.
"""

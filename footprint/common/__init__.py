"""The bottom layer: errors, the clock, plain records, pure maths and packaged data. Imports nothing else of ours."""

//
// All-vs-all BLAST scattered by query chunks: each task searches its chunk of windows against
// the database of all windows, so e-values equal those of one whole search; the chunks are merged.
//
include { EVOSCAN_BLAST } from '../../../modules/local/blast'
include { EVOSCAN_MERGE } from '../../../modules/local/merge'

workflow SCATTER_BLAST {
    take:
    ch_windows // channel: [ val(meta), path(windows) ]
    chunks     // integer: number of query chunks

    main:
    ch_chunks = ch_windows.flatMap { meta, windows -> (1..chunks).collect { i -> [meta, windows, i, chunks] } }
    EVOSCAN_BLAST(ch_chunks)
    ch_parts = EVOSCAN_BLAST.out.blast.groupTuple(size: chunks)
        .join(ch_windows)
        .map { meta, parts, windows -> [meta, windows, parts, 'blast'] }
    EVOSCAN_MERGE(ch_parts)

    emit:
    blast = EVOSCAN_MERGE.out.merged // channel: [ val(meta), path(blast.h5) ]
}
